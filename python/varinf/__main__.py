"""varinf's command line: ``python -m varinf demo``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _co2_kernel():
    """The structure of Rasmussen & Williams' CO2 kernel (GPML section 5.4.3): a smooth
    long-term trend, a seasonal component that may decay, medium-term irregularities."""
    from . import kernels as K

    trend = K.SquaredExponential(variance=1.0, lengthscales=30.0)
    seasonal = K.Periodic(variance=0.1, lengthscales=1.0, period=1.0) * K.SquaredExponential(1.0, 50.0)
    irregular = K.RationalQuadratic(variance=0.01, lengthscales=1.0, alpha=1.0)
    return trend + seasonal + irregular


def demo(quick: bool = False) -> int:
    """Fit an exact GP to the Mauna Loa CO2 record up to 1990, forecast 1990-2001."""
    import varinf as vi

    t, co2 = vi.datasets.load_co2(monthly=True)
    train = t < 1990.0
    X = (t - 1958.0)[:, None]  # [n, 1] years since 1958
    shift, scale = co2[train].mean(), co2[train].std()
    y = (co2 - shift) / scale  # standardised ppm
    print(f"varinf {vi.__version__} ({vi.build_variant} build, {vi.get_num_threads()} threads)")
    print(f"Mauna Loa CO2, monthly means: {train.sum()} months 1958-1989 for training, "
          f"{(~train).sum()} months 1990-2001 held out\n")

    model = vi.GPR(X[train], y[train], _co2_kernel(), noise_variance=1e-3, mean="constant")
    start = time.perf_counter()
    model.fit(max_iter=30 if quick else 1000)
    seconds = time.perf_counter() - start
    mean, var = model.predict_y(X[~train])
    rmse = float(np.sqrt(np.mean((mean - y[~train]) ** 2)) * scale)
    nlpd = float(-np.mean(model.predict_log_density(X[~train], y[~train])) + np.log(scale))
    # A straight-line trend fitted to the same months, for scale.
    line = np.polyval(np.polyfit(X[train, 0], co2[train], 1), X[~train, 0])
    line_rmse = float(np.sqrt(np.mean((line - co2[~train]) ** 2)))

    print("Fitted hyperparameters (standardised units, time in years):")
    print(f"  {model}\n")
    rows = [("exact GP (L-BFGS-B)", f"{seconds:.2f}", str(model.optimizer_result_.nit),
             f"{model.log_marginal_likelihood():.1f}", f"{rmse:.2f}", f"{nlpd:.2f}"),
            ("linear trend", "", "", "", f"{line_rmse:.2f}", "")]
    header = ("model", "fit s", "iterations", "log marginal lik.", "RMSE 1990-2001 (ppm)", "NLPD")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m varinf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit a GP to the Mauna Loa CO2 record and forecast it")
    p_demo.add_argument("--quick", action="store_true", help="a few optimiser steps only (for CI)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(quick=args.quick)
    return 2  # argparse has already rejected anything else


if __name__ == "__main__":
    sys.exit(main())
