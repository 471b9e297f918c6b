"""Real data sets that need no download.

- :func:`load_co2`: the Mauna Loa weekly CO2 record (1958-2001, public domain), shipped
  inside varinf.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["load_co2"]


def _decimal_year(yyyymmdd: np.ndarray) -> np.ndarray:
    """Dates written as integers YYYYMMDD -> decimal years."""
    ymd = yyyymmdd.astype(np.int64)
    dates = np.array([f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}" for d in ymd],
                     dtype="datetime64[D]")
    years = dates.astype("datetime64[Y]")
    start = years.astype("datetime64[D]")
    length = (years + 1).astype("datetime64[D]") - start
    return 1970 + years.astype(np.float64) + (dates - start) / length


def load_co2(monthly: bool = False):
    """Mauna Loa atmospheric CO2 in ppm: ``(t, co2)`` with t in decimal years, [n] each.

    Weekly flask measurements from March 1958 to December 2001 (2225 weeks with data);
    ``monthly=True`` averages them per calendar month (521 points). Source: Scripps
    Institution of Oceanography via CDIAC, as distributed by statsmodels; public domain.
    """
    with resources.files("varinf").joinpath("data/co2_weekly.csv").open() as f:
        raw = np.genfromtxt(f, delimiter=",", comments="#", skip_header=4, missing_values="",
                            filling_values=np.nan)
    raw = raw[np.isfinite(raw[:, 1])]
    t, co2 = _decimal_year(raw[:, 0]), raw[:, 1]
    if not monthly:
        return t, co2
    month = np.floor(t * 12).astype(np.int64)  # months since year 0
    keys, inverse = np.unique(month, return_inverse=True)
    counts = np.bincount(inverse)
    return np.bincount(inverse, t) / counts, np.bincount(inverse, co2) / counts
