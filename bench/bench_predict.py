"""Prediction throughput: an SVGP's predict_f (latent mean and variance) at many points, varinf
against GPflow and GPyTorch with their prediction caches, for the same parameters.

    python bench/bench_predict.py [--quick] [--skip-peers] [--threads T [T ...]]

The model: m = 512 inducing inputs in d = 8, a squared-exponential ARD kernel, whitened
q(u) = N(q_mu, Lq Lq^T) with random q_mu and Lq (the same values in every library), float64;
10^6 prediction points (quick: m = 128, 2 x 10^4 points, varinf alone).

- varinf: SVGP.predict_f on the whole array (the C++ core cuts it into blocks of rows).
- GPflow: model.posterior() (the cache of Kuu's factor and q(u)'s terms), its predict_f compiled
  with tf.function, on chunks of 20000 rows (the whole array would need an [m, 10^6] matrix).
- GPyTorch: ApproximateGP with a whitened VariationalStrategy in eval mode under no_grad (it
  caches its factors at the first call, made before timing), on the same chunks.

Each row: the median of 3 timed runs after one untimed run, points per second, the ratio to
varinf, the FLOP model's rate and its share of the GEMM rate measured in the same run (per point
2 m^2 + 3 m d: the two triangular [m, m] products of L^-1 Kuf and Lq^T A, and the kernel; GPflow's
cached form costs the same), and the largest difference of the mean and of the variance from
varinf's over the first 2000 points (the accuracy next to the time). Each thread count runs in its own process
(TensorFlow fixes its pools at start-up). Writes bench/results/predict.json (quick:
bench/results/quick/predict.json).
"""

from __future__ import annotations

import json
import time

import numpy as np
from common import (add_roofline, gemm_rates, per_thread_args, roofline_columns, run_per_thread,
                    set_peer_threads, write_results)
from threadpoolctl import threadpool_limits

import varinf as vi

D = 8
CHUNK = 20000
PLAN = {False: (512, 10 ** 6), True: (128, 2 * 10 ** 4)}  # (m, points)


def problem(m: int, n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    Lq = np.tril(0.05 * rng.standard_normal((m, m)), -1) + np.diag(rng.uniform(0.2, 0.9, m))  # [m, m]
    return {"X": rng.uniform(-3, 3, size=(n, D)), "Z": rng.uniform(-3, 3, size=(m, D)),
            "variance": 1.3, "lengthscales": rng.uniform(0.8, 2.0, D),
            "q_mu": 0.5 * rng.standard_normal(m), "Lq": Lq}


def varinf_predictor(p):
    model = vi.SVGP(vi.kernels.SquaredExponential(p["variance"], p["lengthscales"]), vi.likelihoods.Gaussian(0.1),
                    p["Z"].copy(), num_data=10 ** 6)
    model.q_mu, model.q_sqrt = p["q_mu"], p["Lq"]
    return model.predict_f


def gpflow_predictor(p):
    import gpflow
    import tensorflow as tf

    gpflow.config.set_default_float(np.float64)
    kernel = gpflow.kernels.SquaredExponential(variance=p["variance"], lengthscales=p["lengthscales"])
    model = gpflow.models.SVGP(kernel, gpflow.likelihoods.Gaussian(0.1), p["Z"].copy(), whiten=True,
                               q_mu=p["q_mu"][:, None], q_sqrt=p["Lq"][None])
    predict = tf.function(model.posterior().predict_f)

    def run(X):
        parts = [predict(tf.constant(X[i:i + CHUNK])) for i in range(0, len(X), CHUNK)]
        return (np.concatenate([mu.numpy()[:, 0] for mu, _ in parts]),
                np.concatenate([var.numpy()[:, 0] for _, var in parts]))
    return run


def gpytorch_predictor(p):
    import gpytorch
    import torch

    torch.set_default_dtype(torch.float64)
    Z = torch.tensor(p["Z"])

    class Model(gpytorch.models.ApproximateGP):
        def __init__(self):
            q = gpytorch.variational.CholeskyVariationalDistribution(Z.size(0))
            super().__init__(gpytorch.variational.VariationalStrategy(self, Z, q))
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=D))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    model = Model()
    with torch.no_grad():
        model.covar_module.outputscale = p["variance"]
        model.covar_module.base_kernel.lengthscale = torch.tensor(p["lengthscales"])[None]
        q = model.variational_strategy._variational_distribution
        q.variational_mean.copy_(torch.tensor(p["q_mu"]))
        q.chol_variational_covar.copy_(torch.tensor(p["Lq"]))
        # else its first call replaces q(u) by its initialisation from the prior
        model.variational_strategy.variational_params_initialized.fill_(1)
    model.eval()

    def run(X):
        with torch.no_grad():
            parts = [model(torch.tensor(X[i:i + CHUNK])) for i in range(0, len(X), CHUNK)]
            return (np.concatenate([f.mean.numpy() for f in parts]),
                    np.concatenate([f.variance.numpy() for f in parts]))
    return run


def timed(run, X, repeats: int = 3):
    out = run(X)  # untimed: caches, tracing, page faults
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(X)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), out


def worker(args):
    set_peer_threads(args.worker)
    vi.set_num_threads(args.worker)
    m, n = PLAN[args.quick]
    p = problem(m, n)
    makers = {"varinf": varinf_predictor}
    if not args.skip_peers and not args.quick:
        makers.update({"gpflow": gpflow_predictor, "gpytorch": gpytorch_predictor})
    rows, reference = [], None
    with threadpool_limits(limits=args.worker):
        for name, make in makers.items():
            try:
                run = make(p)
            except ImportError:
                continue
            seconds, (mean, var) = timed(run, p["X"])
            if reference is None:
                reference = mean[:2000], var[:2000]
            rows.append({"threads": args.worker, "contender": name, "m": m, "points": n, "seconds": seconds,
                         "mpoints_per_s": n / seconds / 1e6,
                         "max_mean_diff": float(np.max(np.abs(mean[:2000] - reference[0]))),
                         "max_var_diff": float(np.max(np.abs(var[:2000] - reference[1])))})
            print(f"  {args.worker} thread(s) {name:9s} {seconds:.3f} s", flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f)


def main() -> None:
    args = per_thread_args(__doc__, "m = 128, 2 x 10^4 points, varinf alone")
    if args.worker:
        worker(args)
        return
    rates = gemm_rates(args.quick)  # before the timings, once
    rows = [row for result in run_per_thread(__file__, args).values() for row in result]
    base = {r["threads"]: r["seconds"] for r in rows if r["contender"] == "varinf"}
    for r in rows:
        r["x_varinf"] = r["seconds"] / base[r["threads"]]
    add_roofline(rows, lambda r: r["points"] * (2.0 * r["m"] ** 2 + 3.0 * r["m"] * D), lambda r: r["seconds"],
                 "float64", rates)
    columns = [("threads", "threads"), ("contender", "contender"), ("m", "m"), ("points", "points"),
               ("seconds", "s"), ("mpoints_per_s", "M points/s"), ("x_varinf", "x varinf"),
               *roofline_columns("run"), ("max_mean_diff", "max |mean - varinf|"),
               ("max_var_diff", "max |var - varinf|")]
    notes = [f"SE ARD kernel in d = {D}, whitened q(u) with random q_mu and Lq, float64; peers on chunks of "
             f"{CHUNK} rows with their caches built before timing; median of 3 runs after 1 untimed run"]
    write_results("predict", "SVGP predict_f throughput", rows, columns, args.quick, notes=notes)


if __name__ == "__main__":
    main()
