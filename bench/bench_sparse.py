"""Sparse GPs: SVGP training steps and SGPR L-BFGS-B fits, varinf against the numpy reference and,
when installed, GPyTorch and GPflow.

    python bench/bench_sparse.py [--quick] [--threads T] [--skip-peers]

SVGP (Gaussian likelihood, squared-exponential ARD kernel, whitened, full q_sqrt, learned Z,
Adam lr 0.01): every contender starts from the same values (q(u) = prior, variance 1,
lengthscales 1, noise 0.1, Z = the same random rows of X) and takes the same minibatches.
`ms/step` is the median time of a step (varinf: of chunks of steps run by its C++ loop, divided
by the chunk length); after the steps each reports its ELBO per datum on a fixed evaluation
subset of the training data, and the test RMSE and NLPD (Gaussian predictive). GPyTorch runs in
float64 (VariationalStrategy + CholeskyVariationalDistribution, ZeroMean, ScaleKernel(RBF ARD));
GPflow in float64 (SVGP whiten=True). Thread counts are set equal for all (torch, TF intra-op,
BLAS through threadpoolctl, varinf).

SGPR: L-BFGS-B with the same iteration cap from the same start (Z learned); time and the bound
reached, against GPflow's SGPR with gpflow.optimizers.Scipy.

Scaling (varinf alone): SVGP step time as m doubles at fixed B and n (the model is
svgp_step_flops: 6 m^2 B + 3.7 m^3 + the kernel's 10 (B + m) m d flops per step), and as n grows at fixed (m, B) (it should not change); the
peak memory of an SGPR bound-and-gradient evaluation and of SVGP training at n = 10^6, each in a
fresh process, beyond the memory of the data itself.

Roofline: every timed row also gives its FLOP model's GFLOP per step (or per evaluation), the
GFLOP/s achieved and their percentage of Eigen's float64 GEMM rate at the row's thread count,
measured in this process (common.gemm_rates); FLOP models of docs/math.md section 9.

Writes bench/results/sparse.json (quick runs: bench/results/quick/sparse.json; with --threads T
other than the default: sparse_threads<T>.json).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import add_roofline, gemm_rates, gpflow_adam_step, roofline_columns, set_peer_threads, write_results
from threadpoolctl import threadpool_limits

import varinf as vi
from varinf._loader import core
from varinf.reference import sparse as ref

D = 8
LR = 0.01
NOISE0 = 0.1


def make_data(n: int, n_test: int, seed: int = 0):
    """Synthetic regression in d = 8: X [n, 8] uniform in [-2, 2], smooth f plus N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n + n_test, D))  # [n + n*, d]
    f = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + 0.3 * X[:, 2] * X[:, 3] + 0.2 * np.tanh(X[:, 4:].sum(1))
    y = f + 0.1 * rng.standard_normal(len(f))
    return X[:n], y[:n], X[n:], y[n:]


def svgp_step_flops(m: int, B: int, d: int = D) -> float:
    """One whitened SVGP step, full q_sqrt, Gaussian likelihood (docs/math.md 9.5): A = L^-1 Kuf,
    T = Lq^T A, dLq, Lq (2 T D), L^-T Abar and the Lbar update (6 m^2 B); Cholesky and L^-1 of
    Kuu and the Cholesky reverse mode (3.7 m^3); Kuf [m, B] and K(Z) [m, m] with their gradient
    contractions (10 B m d + 10 m^2 d)."""
    return 6.0 * m * m * B + 3.7 * m ** 3 + 10.0 * (B + m) * m * d


def sgpr_eval_flops(n: int, m: int, d: int = D) -> float:
    """One SGPR bound + gradient (docs/math.md 9.3): P by rank-m updates and Kufbar = 2 Pbar Kuf
    (3 n m^2), the m x m factorisations and congruences (8 m^3), Kuf [m, n] twice and its
    gradient contraction (13 n m d)."""
    return 3.0 * n * m * m + 8.0 * m ** 3 + 13.0 * n * m * d


def nlpd(y, mean, var) -> float:
    return float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y - mean) ** 2 / var))


def rmse(y, mean) -> float:
    return float(np.sqrt(np.mean((y - mean) ** 2)))


# ------------------------------------------------------------------------------------------------
# SVGP contenders. Each: run(batches) -> list of per-step (or per-chunk) seconds; then report().

class VarinfSVGP:
    name = "varinf"
    dtype = "float64"

    def __init__(self, Z0, n):
        kernel = vi.kernels.SquaredExponential(1.0, np.ones(D))
        self.model = vi.SVGP(kernel, vi.likelihoods.Gaussian(NOISE0), Z0.copy(), num_data=n, dtype=self.dtype)

    def run(self, X, y, batches, chunk=10):
        layout, params = self.model._layout()
        trainer = core.sparse.SVGPTrainer(layout, params.get(), LR, 0.9, 0.999, 1e-8, 0)
        times = []
        for s in range(0, len(batches), chunk):
            part = np.ascontiguousarray(batches[s:s + chunk])
            start = time.perf_counter()
            core.testing.svgp_run_batches(trainer, X, y, part)
            times.append((time.perf_counter() - start) / len(part))
        params.set(trainer.x)
        return times

    def elbo(self, X, y, n):
        return self.model.elbo(X, y) / n  # the batch terms are scaled by n / len(y) already

    def predict(self, Xs):
        return self.model.predict_y(Xs)


class VarinfSVGP32(VarinfSVGP):
    """The batch products in float32 (docs/math.md section 7.14); its ELBO is evaluated in float32."""
    name = "varinf-f32"
    dtype = "float32"


class NumpySVGP:
    """The reference step in numpy (ELBO and analytic gradient) with Adam in numpy; values are
    optimised through the same softplus transform as varinf (lower bound 1e-6)."""

    name = "numpy"

    def __init__(self, Z0, n):
        m = Z0.shape[0]
        self.n = n
        self.free = {"Z": Z0.copy(), "q_mu": np.zeros(m), "q_sqrt": np.eye(m)}
        self.pos = {"variance": np.array(1.0), "lengthscales": np.ones(D), "noise": np.array(NOISE0)}
        self.raw = {k: (v - 1e-6) + np.log(-np.expm1(-(v - 1e-6))) for k, v in self.pos.items()}  # inverse

    def values(self):
        pos = {k: np.logaddexp(0, r) + 1e-6 for k, r in self.raw.items()}
        return pos

    def step_grad(self, Xb, yb):
        p = self.values()
        elbo, g = ref.svgp_elbo_grad_se(self.free["Z"], self.free["q_mu"], self.free["q_sqrt"], p["variance"],
                                        p["lengthscales"], p["noise"], Xb, yb, self.n)
        grads = {k: g[k] for k in self.free}
        for k, r in self.raw.items():
            grads[k] = g[k] * 0.5 * (1 + np.tanh(0.5 * r))  # d softplus = sigmoid
        return elbo, grads

    def run(self, X, y, batches):
        state = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in {**self.free, **self.raw}.items()}
        times = []
        for t, rows in enumerate(batches, start=1):
            start = time.perf_counter()
            _, grads = self.step_grad(X[rows], y[rows])
            for k, g in grads.items():
                m1, m2 = state[k]
                m1 *= 0.9
                m1 += 0.1 * g
                m2 *= 0.999
                m2 += 0.001 * g * g
                target = self.free if k in self.free else self.raw
                target[k] = target[k] + LR * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)
            times.append(time.perf_counter() - start)
        return times

    def elbo(self, X, y, n):
        p = self.values()
        return ref.svgp_elbo(_se_kernel(p), self.free["Z"], self.free["q_mu"], self.free["q_sqrt"], X, y, n,
                             noise=p["noise"]) / n

    def predict(self, Xs):
        p = self.values()
        mean, var = ref.svgp_predict_f(_se_kernel(p), self.free["Z"], self.free["q_mu"], self.free["q_sqrt"], Xs)
        return mean, var + p["noise"]


def _se_kernel(p):
    return vi.kernels.SquaredExponential(float(p["variance"]), p["lengthscales"])


class GPflowSVGP:
    name = "gpflow"

    def __init__(self, Z0, n):
        import gpflow
        import tensorflow as tf

        self.tf = tf
        gpflow.config.set_default_float(np.float64)
        kernel = gpflow.kernels.SquaredExponential(variance=1.0, lengthscales=np.ones(D))
        self.model = gpflow.models.SVGP(kernel, gpflow.likelihoods.Gaussian(variance=NOISE0), Z0.copy(),
                                        num_data=n, whiten=True)
        self.opt = tf.optimizers.Adam(LR)
        self.step = gpflow_adam_step(tf, self.model, self.opt)

    def run(self, X, y, batches):
        tf = self.tf
        data = [(tf.constant(X[r]), tf.constant(y[r][:, None])) for r in batches]
        times = []
        for Xb, yb in data:
            start = time.perf_counter()
            self.step(Xb, yb).numpy()
            times.append(time.perf_counter() - start)
        return times[1:]  # the first step traces and compiles

    def elbo(self, X, y, n):
        return float(self.model.elbo((X, y[:, None]))) / n

    def predict(self, Xs):
        mean, var = self.model.predict_y(Xs)
        return mean.numpy()[:, 0], var.numpy()[:, 0]


class GPyTorchSVGP:
    name = "gpytorch"
    dtype = "float64"

    def __init__(self, Z0, n):
        import gpytorch
        import torch

        self.torch, self.gpytorch = torch, gpytorch
        torch.set_default_dtype(getattr(torch, self.dtype))
        Z = self.tensor(Z0)

        class Model(gpytorch.models.ApproximateGP):
            def __init__(self):
                q = gpytorch.variational.CholeskyVariationalDistribution(Z.size(0))
                strategy = gpytorch.variational.VariationalStrategy(self, Z, q, learn_inducing_locations=True)
                super().__init__(strategy)
                self.mean_module = gpytorch.means.ZeroMean()
                self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=D))

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

        self.model = Model()
        self.lik = gpytorch.likelihoods.GaussianLikelihood()
        with torch.no_grad():
            self.model.covar_module.outputscale = 1.0
            self.model.covar_module.base_kernel.lengthscale = torch.ones(1, D)
            self.lik.noise = NOISE0
            q = self.model.variational_strategy._variational_distribution
            q.variational_mean.zero_()
            q.chol_variational_covar.copy_(torch.eye(Z.size(0)))
        self.mll = gpytorch.mlls.VariationalELBO(self.lik, self.model, num_data=n)
        self.opt = torch.optim.Adam([*self.model.parameters(), *self.lik.parameters()], lr=LR)

    def run(self, X, y, batches):
        torch = self.torch
        self.model.train()
        self.lik.train()
        data = [(self.tensor(X[r]), self.tensor(y[r])) for r in batches]
        times = []
        for Xb, yb in data:
            start = time.perf_counter()
            self.opt.zero_grad()
            loss = -self.mll(self.model(Xb), yb)
            loss.backward()
            self.opt.step()
            times.append(time.perf_counter() - start)
        return times

    def elbo(self, X, y, n):
        torch = self.torch
        with torch.no_grad():
            return float(self.mll(self.model(self.tensor(X)), self.tensor(y)))  # already per datum

    def predict(self, Xs):
        torch = self.torch
        self.model.eval()
        self.lik.eval()
        with torch.no_grad():
            out = self.lik(self.model(self.tensor(Xs)))
            return out.mean.double().numpy(), out.variance.double().numpy()

    def tensor(self, a):
        return self.torch.tensor(np.asarray(a, dtype=self.dtype))


class GPyTorchSVGP32(GPyTorchSVGP):
    """GPyTorch's default precision (its float jitter, 1e-4, is the one varinf's float32 uses)."""
    name = "gpytorch-f32"
    dtype = "float32"


def svgp_case(m, B, n, n_test, steps, threads, peers, numpy_steps):
    X, y, Xs, ys = make_data(n, n_test)
    rng = np.random.default_rng(1)
    Z0 = X[rng.choice(n, m, replace=False)]  # [m, d]
    batches = np.stack([rng.choice(n, B, replace=False) for _ in range(steps)]).astype(np.int64)
    evaluation = rng.choice(n, min(n, 10000), replace=False)
    rows = []
    classes = [VarinfSVGP, VarinfSVGP32, NumpySVGP] + ([GPyTorchSVGP, GPyTorchSVGP32, GPflowSVGP] if peers else [])
    for cls in classes:
        try:
            contender = cls(Z0, n)
        except ImportError as exc:
            print(f"  {cls.name}: not installed ({exc})")
            continue
        use = batches[:numpy_steps] if cls is NumpySVGP else batches
        with threadpool_limits(limits=threads):
            times = contender.run(X, y, use)
            mean, var = contender.predict(Xs)
            row = {"contender": cls.name, "dtype": getattr(cls, "dtype", "float64"), "m": m, "B": B, "n": n,
                   "steps": len(use), "threads": threads,
                   "ms_per_step": 1e3 * float(np.median(times)),
                   "elbo_per_datum": contender.elbo(X[evaluation], y[evaluation], n),
                   "test_rmse": rmse(ys, mean), "test_nlpd": nlpd(ys, mean, var),
                   "load_avg_1min": os.getloadavg()[0]}
        rows.append(row)
        print(f"  {row['contender']:9s} m={m} B={B}: {row['ms_per_step']:.2f} ms/step, "
              f"ELBO/n {row['elbo_per_datum']:.4f} after {row['steps']} steps, RMSE {row['test_rmse']:.4f}, "
              f"NLPD {row['test_nlpd']:.4f}", flush=True)
    base = next(r for r in rows if r["contender"] == "varinf")["ms_per_step"]
    for r in rows:
        r["time_ratio_vs_varinf"] = r["ms_per_step"] / base
    return rows


# ------------------------------------------------------------------------------------------------
# SGPR

def sgpr_case(n, m, max_iter, threads, peers):
    X, y, Xs, ys = make_data(n, 2000, seed=2)
    Z0 = X[np.random.default_rng(3).choice(n, m, replace=False)]  # [m, d]
    rows = []
    with threadpool_limits(limits=threads):
        model = vi.SGPR(X, y, vi.kernels.SquaredExponential(1.0, np.ones(D)), Z0.copy(), noise_variance=NOISE0)
        start = time.perf_counter()
        model.fit(max_iter=max_iter)
        seconds = time.perf_counter() - start
        mean, var = model.predict_y(Xs)
        rows.append({"contender": "varinf", "n": n, "m": m, "threads": threads, "seconds": seconds,
                     "iterations": int(model.optimizer_result_.nit), "evaluations": int(model.optimizer_result_.nfev),
                     "bound": float(model.elbo()), "test_rmse": rmse(ys, mean), "test_nlpd": nlpd(ys, mean, var)})
        if peers:
            try:
                import gpflow
            except ImportError as exc:
                print(f"  gpflow: not installed ({exc})")
            else:
                gpflow.config.set_default_float(np.float64)
                gm = gpflow.models.SGPR((X, y[:, None]), gpflow.kernels.SquaredExponential(1.0, np.ones(D)),
                                        Z0.copy(), noise_variance=NOISE0)
                start = time.perf_counter()
                res = gpflow.optimizers.Scipy().minimize(gm.training_loss, gm.trainable_variables, compile=True,
                                                         options={"maxiter": max_iter})
                seconds = time.perf_counter() - start
                mean, var = gm.predict_y(Xs)
                rows.append({"contender": "gpflow", "n": n, "m": m, "threads": threads, "seconds": seconds,
                             "iterations": int(res.nit), "evaluations": int(res.nfev),
                             "bound": float(gm.elbo()), "test_rmse": rmse(ys, mean.numpy()[:, 0]),
                             "test_nlpd": nlpd(ys, mean.numpy()[:, 0], var.numpy()[:, 0])})
    for r in rows:
        r["time_ratio_vs_varinf"] = r["seconds"] / rows[0]["seconds"]
        r["ms_per_evaluation"] = 1e3 * r["seconds"] / max(r["evaluations"], 1)
        print(f"  {r['contender']:9s} SGPR n={n} m={m}: {r['seconds']:.2f} s for {r['iterations']} iterations "
              f"({r['evaluations']} evaluations), bound {r['bound']:.2f}, RMSE {r['test_rmse']:.4f}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------
# Scaling and memory

def svgp_step_ms(m, B, n, steps, seed=0):
    """varinf's median ms per SVGP step at (m, B, n): three calls of fit(iterations=steps), so
    that fit's O(n) input validation is spread over many steps."""
    X, y, _, _ = make_data(n, 10, seed=seed)
    Z0 = X[np.random.default_rng(1).choice(n, m, replace=False)]
    model = vi.SVGP(vi.kernels.SquaredExponential(1.0, np.ones(D)), vi.likelihoods.Gaussian(NOISE0), Z0, n)
    model.fit(X, y, iterations=5, batch_size=B, progress=False, seed=0)  # warm-up
    times = []
    for r in range(3):
        start = time.perf_counter()
        model.fit(X, y, iterations=steps, batch_size=B, progress=False, seed=r)
        times.append((time.perf_counter() - start) / steps)
    return 1e3 * float(np.median(times))


def scaling_rows(quick, threads):
    B = 256 if quick else 512
    ms = [32, 64, 128] if quick else [64, 128, 256, 512, 1024]
    ns = [5000, 20000] if quick else [10000, 100000, 1000000]
    rows = []
    with threadpool_limits(limits=threads):
        svgp_step_ms(ms[0], B, ns[0], 10)  # warm-up: thread pool, page faults
        for m in ms:
            rows.append({"vary": "m", "m": m, "B": B, "n": ns[0], "threads": threads,
                         "ms_per_step": svgp_step_ms(m, B, ns[0], 10 if quick or m > 256 else 50)})
        for n in ns:
            rows.append({"vary": "n", "m": ms[1], "B": B, "n": n, "threads": threads,
                         "ms_per_step": svgp_step_ms(ms[1], B, n, 10 if quick else 200)})
    for prev, row in zip(rows, rows[1:]):
        if row["vary"] == prev["vary"]:
            row["time_ratio_to_previous"] = row["ms_per_step"] / prev["ms_per_step"]
            row["model_ratio"] = svgp_step_flops(row["m"], B) / svgp_step_flops(prev["m"], B)
    for r in rows:
        print(f"  SVGP scaling m={r['m']} B={r['B']} n={r['n']}: {r['ms_per_step']:.2f} ms/step"
              + (f" (x{r['time_ratio_to_previous']:.2f}, model x{r['model_ratio']:.2f})"
                 if "model_ratio" in r else ""), flush=True)
    return rows


_MEMORY_SCRIPT = """
import os, sys, threading, time, numpy as np, varinf as vi
n, m, B, which = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
page = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page / 2 ** 20
rng = np.random.default_rng(0)
X = rng.uniform(-2.0, 2.0, (n, 8))
y = 0.1 * rng.standard_normal(n)
for s in range(0, n, 10000):
    y[s:s + 10000] += np.sin(X[s:s + 10000]).sum(1)
Z = X[rng.choice(n, m, replace=False)]
kern = vi.kernels.SquaredExponential(1.0, np.ones(8))
base = rss_mb()
peak, done = [base], threading.Event()
def watch():  # the resident set, sampled every millisecond while the model runs
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.001)
watcher = threading.Thread(target=watch)
watcher.start()
start = time.perf_counter()
if which == "sgpr":
    vi.SGPR(X, y, kern, Z, noise_variance=0.1).elbo(return_grad=True)
else:
    vi.SVGP(kern, vi.likelihoods.Gaussian(0.1), Z, n).fit(X, y, iterations=200, batch_size=B, progress=False)
seconds = time.perf_counter() - start
done.set()
watcher.join()
print(base, max(peak[0], rss_mb()), seconds)
"""


def memory_rows(quick, threads):
    import subprocess
    import sys

    n = 100000 if quick else 1000000
    rows = []
    for which, m in (("sgpr", 256), ("svgp", 256)):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n), str(m), "512", which],
                             capture_output=True, text=True, check=True, env=env).stdout.split()
        base, peak, seconds = (float(v) for v in out)
        rows.append({"model": which, "n": n, "m": m, "threads": threads, "data_mb": 8.0 * n * 9 / 2 ** 20,
                     "rss_before_mb": base, "peak_rss_mb": peak, "extra_mb": peak - base,
                     "n_by_m_mb": 8.0 * n * m / 2 ** 20, "seconds": seconds})
        print(f"  {which} n={n} m={m}: peak RSS {peak:.0f} MB, {peak - base:.0f} MB beyond the data "
              f"(an n x m matrix would be {8.0 * n * m / 2 ** 20:.0f} MB); {seconds:.2f} s", flush=True)
    return rows




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small n and few steps")
    default_threads = vi.get_num_threads()
    parser.add_argument("--threads", type=int, default=default_threads)
    parser.add_argument("--skip-peers", action="store_true", help="varinf and numpy only")
    args = parser.parse_args()
    peers = not args.skip_peers
    vi.set_num_threads(args.threads)
    if peers:
        set_peer_threads(args.threads)
    rates = gemm_rates(args.quick)  # before the timings, once
    if args.quick:
        svgp_cases = [(128, 512, 20000, 2000, 30, 10)]
        sgpr_args = (2000, 64, 20)
    else:
        svgp_cases = [(128, 512, 100000, 10000, 300, 300), (512, 1024, 100000, 10000, 200, 50)]
        sgpr_args = (10000, 256, 100)
    svgp_rows = [r for (m, B, n, n_test, steps, numpy_steps) in svgp_cases
                 for r in svgp_case(m, B, n, n_test, steps, args.threads, peers, numpy_steps)]
    sgpr_rows = sgpr_case(*sgpr_args, args.threads, peers)
    scale_rows = scaling_rows(args.quick, args.threads)
    mem_rows = memory_rows(args.quick, args.threads)
    for dtype in ("float64", "float32"):  # each row against the GEMM rate of its own precision
        add_roofline([r for r in svgp_rows + scale_rows if r.get("dtype", "float64") == dtype],
                     lambda r: svgp_step_flops(r["m"], r["B"]), lambda r: r["ms_per_step"] / 1e3, dtype, rates)
    add_roofline(sgpr_rows, lambda r: sgpr_eval_flops(r["n"], r["m"]), lambda r: r["ms_per_evaluation"] / 1e3,
                 "float64", rates)
    svgp_columns = [("m", "m"), ("B", "B"), ("contender", "contender"), ("dtype", "dtype"), ("threads", "threads"),
                    ("ms_per_step", "ms/step"), ("time_ratio_vs_varinf", "x varinf"),
                    *roofline_columns("step"), ("elbo_per_datum", "ELBO/n"), ("steps", "steps"), ("test_rmse", "RMSE"),
                    ("test_nlpd", "NLPD"), ("load_avg_1min", "load")]
    sgpr_columns = [("n", "n"), ("m", "m"), ("contender", "contender"), ("threads", "threads"),
                    ("seconds", "seconds"), ("time_ratio_vs_varinf", "x varinf"), ("iterations", "iterations"),
                    ("ms_per_evaluation", "ms/eval"), *roofline_columns("eval"), ("bound", "bound"), ("test_rmse", "RMSE")]
    area = "sparse" if args.threads == default_threads else f"sparse_threads{args.threads}"
    write_results(area, "Sparse GPs: SVGP training steps (d = 8) and SGPR L-BFGS-B", svgp_rows,
                  svgp_columns, args.quick, notes=[
                      "same start and same minibatches for every SVGP contender; Adam lr 0.01",
                      "numpy takes fewer steps at m = 512 (its ELBO is then not comparable)",
                      "SGPR: the same L-BFGS-B iteration cap from the same start, Z learned",
                      "model GFLOP, GFLOP/s, % GEMM: the FLOP model of the row's unit (docs/math.md 9), "
                      "that over the unit's time, and its percentage of Eigen's float64 GEMM rate in this "
                      "process at the row's thread count; SVGP step: 6 m^2 B + 3.7 m^3 + 10 (B + m) m d, "
                      "every contender counted with varinf's model; SGPR evaluation (bound + gradient, "
                      "ms/eval includes the optimiser's share): 3 n m^2 + 8 m^3 + 13 n m d"],
                  extra_tables=[
                      ("SGPR, L-BFGS-B", sgpr_rows, sgpr_columns),
                      ("SVGP step time as m doubles and as n grows (varinf)", scale_rows,
                       [("vary", "varied"), ("m", "m"), ("B", "B"), ("n", "n"), ("threads", "threads"),
                        ("ms_per_step", "ms/step"), ("time_ratio_to_previous", "x previous"),
                        ("model_ratio", "x model"), *roofline_columns("step")]),
                      ("Peak memory of an SGPR evaluation and of 200 SVGP steps, one process each (resident set sampled every ms)", mem_rows,
                       [("model", "model"), ("n", "n"), ("m", "m"), ("threads", "threads"),
                        ("data_mb", "data MB"), ("peak_rss_mb", "peak MB"), ("extra_mb", "beyond data MB"),
                        ("n_by_m_mb", "n x m would be MB"), ("seconds", "seconds")])])


if __name__ == "__main__":
    main()
