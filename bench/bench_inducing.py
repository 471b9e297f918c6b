"""Where the inducing inputs start: k-means centres against greedy conditional variance (Burt,
Rasmussen & van der Wilk 2020), for SGPR fitted by L-BFGS-B from each start.

    python bench/bench_inducing.py [--quick]

The data of bench_sparse.py (d = 8, smooth f plus N(0, 0.1^2) noise), n = 10^4 training and
2000 test points (quick: 2000 and 500). For each m, both placements start from the same kernel
(SE-ARD, variance 1, lengthscales 1) and noise 0.1; the table gives the time to place Z, the
bound per datum after 100 L-BFGS-B iterations (quick: 20) with Z learned, and the test RMSE and
NLPD; then the same with Z fixed where it was placed (what the placement alone is worth).

Writes bench/results/inducing.json (quick runs: bench/results/quick/inducing.json).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from bench_sparse import make_data, nlpd, rmse
from common import parse_args, threads, write_results

import varinf as vi

D = 8


def run(X, y, Xt, yt, m, method, train_Z, iterations):
    kernel = vi.kernels.SquaredExponential(1.0, np.ones(D))
    start = time.perf_counter()
    Z = vi.inducing.inducing_points(X, m, seed=0, method=method, kernel=kernel)
    placed = time.perf_counter() - start
    model = vi.SGPR(X, y, kernel, Z, noise_variance=0.1, train_Z=train_Z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the iteration cap
        model.fit(max_iter=iterations)
    mean, var = model.predict_y(Xt)
    return {"m": m, "method": method, "Z": "learned" if train_Z else "fixed", "place_s": placed,
            "bound_per_datum": model.elbo() / len(y), "test_rmse": rmse(yt, mean), "test_nlpd": nlpd(yt, mean, var)}


def main():
    args = parse_args(__doc__)
    n, n_test, ms, iterations = (2000, 500, (16, 32), 20) if args.quick else (10_000, 2000, (32, 64, 128), 100)
    X, y, Xt, yt = make_data(n, n_test)
    rows = []
    with threads(2):
        for train_Z in (True, False):
            for m in ms:
                for method in ("kmeans", "greedy-variance"):
                    rows.append(run(X, y, Xt, yt, m, method, train_Z, iterations))
    columns = [("m", "m"), ("method", "placement"), ("Z", "Z"), ("place_s", "place s"),
               ("bound_per_datum", "bound / n"), ("test_rmse", "test RMSE"), ("test_nlpd", "test NLPD")]
    write_results("inducing", "SGPR from k-means against greedy-variance inducing inputs", rows, columns,
                  args.quick, notes=[f"{iterations} L-BFGS-B iterations, 2 threads, the same start otherwise"])


if __name__ == "__main__":
    main()
