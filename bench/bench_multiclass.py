"""Multi-class SVGP (K = 10 latent GPs): Adam step time and test accuracy, varinf (RobustMax and
Softmax) against GPflow (SVGP + MultiClass) and GPyTorch (IndependentMultitaskVariationalStrategy
+ SoftmaxLikelihood).

    python bench/bench_multiclass.py [--quick] [--skip-peers] [--threads 1 2]

Problems: d = 64, the 8x8 digits (vi.datasets.load_digits_scaled, 1797 x 64, an 80/20 split
with train_test_split(seed=0)); d = 784, Fashion-MNIST when installed, else (usually) a seeded
synthetic 10-class problem in 784 dimensions (class clusters in a 20-dimensional latent space
mapped into [0, 1]^784 by a fixed random sigmoid map, plus pixel noise; 10000 train, 2000 test;
the classes overlap, nearest centroid scores about 0.86).

Every contender: m = 100 inducing inputs shared by the 10 latent GPs, starting at the same
k-means centres of the training inputs (learned); one squared-exponential kernel shared by the
latent GPs, variance 1, the lengthscale(s) starting at the median distance between training
inputs (one per input dimension at d = 64, a single one at d = 784); whitened q(u) = N(0, I)
with full q_sqrt; zero mean; float64; Adam lr 0.01 (beta 0.9, 0.999, eps 1e-8); the same
minibatches of B = 256 rows (index arrays drawn once, seeded). Every contender takes the same
number of steps; steps are run in chunks, the contenders interleaved chunk by chunk; the first
chunk of each is untimed (warm-up, tracing) but is trained; `ms/step` is the median over the
other chunks of chunk time / chunk length. Test accuracy (and the mean negative log predictive
probability of the label) after the steps, from each library's own predictive class
probabilities. Roofline: each row's FLOP model per step (step_flops), the GFLOP/s achieved and
their percentage of Eigen's float64 GEMM rate at the row's thread count, measured in the parent
process (common.gemm_rates).

- varinf: vi.SVGP with vi.likelihoods.RobustMax(10) (20 Gauss-Hermite points, eps 1e-3 fixed) or
  vi.likelihoods.Softmax(10, num_samples=15); its C++ Adam loop on the given batches
  (core.testing.svgp_run_batches, the loop SVGP.fit runs on batches it draws itself).
- GPflow: gpflow.models.SVGP(SE, MultiClass(10) [RobustMax, 20 GH points, eps 1e-3 fixed],
  Z, num_latent_gps=10, whiten=True), tf Adam on training_loss inside one tf.function per step.
- GPyTorch: ApproximateGP with IndependentMultitaskVariationalStrategy(VariationalStrategy(...,
  learn_inducing_locations=True), num_tasks=10), CholeskyVariationalDistribution(batch_shape=[10]),
  ScaleKernel(RBF) without a batch shape (shared), SoftmaxLikelihood(num_features=10,
  num_classes=10, mixing_weights=False), VariationalELBO, torch Adam. Its expected log
  likelihood is a Monte Carlo average over gpytorch.settings.num_likelihood_samples (default 10);
  set to 15 here in training, as varinf's Softmax; predictions average 256 samples.

Each thread count runs in its own process (TensorFlow fixes its thread pools at start-up): torch,
TF intra-op (inter-op 1), BLAS (threadpoolctl), OpenMP and varinf all get the same count.
Writes bench/results/multiclass.json (quick: bench/results/quick/multiclass.json; with other
--threads: multiclass_threads<T>.json).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from common import (add_roofline, gemm_rates, gpflow_adam_step, per_thread_args, roofline_columns, run_per_thread,
                    set_peer_threads, write_results)
from threadpoolctl import threadpool_limits

import varinf as vi
from varinf._loader import core

K = 10
M = 100
B = 256
LR = 0.01
PEER_TRAIN_SAMPLES = 15   # GPyTorch's MC samples in training (varinf Softmax's default)
PREDICT_SAMPLES = 256     # GPyTorch's MC samples in prediction (varinf Softmax predicts with max(S, 256))

# (d, steps at 1 thread = the accuracy run, steps at 2+ threads = timing only, chunk) per mode
PLAN = {False: {64: (1000, 300, 10), 784: (500, 200, 10)},
        True: {64: (100, 40, 10), 784: (40, 20, 10)}}


def step_flops(d: int, m: int = M, batch: int = B, latent: int = K, groups: int = 1) -> float:
    """One whitened SVGP step with `latent` GPs sharing `groups` kernels and Z (docs/math.md
    9.5): A = L^-1 Kuf, L^-T Abar and the Lbar update per group, T_l, dLq_l and
    Lq_l (2 T_l D_l) per latent GP (3 m^2 B (G + L)); Cholesky, L^-1 and reverse mode per group
    (3.7 m^3 G); Kuf [m, B] and K(Z) with their contractions (10 (B + m) m d). The likelihood's
    transcendentals are not counted."""
    return (3.0 * m * m * batch * (groups + latent) + 3.7 * m ** 3 * groups
            + 10.0 * (batch + m) * m * d * groups)


# ------------------------------------------------------------------------------------------------
# Data

def synthetic_784(n_train: int, n_test: int, seed: int = 0):
    """10 classes in [0, 1]^784: latent z = centre_y + 1.5 N(0, I_20) (centres N(0, I_20); the
    classes overlap: nearest centroid scores about 0.86), x = sigmoid(z W + b) + N(0, 0.1^2)
    clipped to [0, 1], W [20, 784] and b fixed random."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((K, 20))            # [K, 20]
    W = rng.standard_normal((20, 784)) / np.sqrt(20)  # [20, 784]
    b = rng.standard_normal(784) - 1.0                 # [784], mostly dark pixels as in images
    n = n_train + n_test
    y = rng.integers(0, K, n)
    z = centres[y] + 1.5 * rng.standard_normal((n, 20))                   # [n, 20]
    X = 1.0 / (1.0 + np.exp(-(z @ W + b))) + 0.1 * rng.standard_normal((n, 784))
    X = np.clip(X, 0.0, 1.0)
    return X[:n_train], X[n_train:], y[:n_train].astype(float), y[n_train:].astype(float)


def load_problem(d: int, quick: bool):
    """(X, Xs, y, ys, description): train and test inputs [n, d] and labels as floats."""
    if d == 64:
        X, y = vi.datasets.load_digits_scaled(dtype=np.float64)
        X, Xs, y, ys = vi.datasets.train_test_split(X, y.astype(float), test_fraction=0.2, seed=0)
        return X, Xs, y, ys, "digits 8x8 (1797 x 64), 80/20 split seed 0"
    n_train, n_test = (2000, 500) if quick else (10000, 2000)
    try:
        X, y = vi.datasets.load_fashion_mnist("train", dtype=np.float64)
        Xs, ys = vi.datasets.load_fashion_mnist("test", dtype=np.float64)
        return (X[:n_train], Xs[:n_test], y[:n_train].astype(float), ys[:n_test].astype(float),
                f"Fashion-MNIST (first {n_train} train, first {n_test} test rows)")
    except (OSError, ValueError):
        X, Xs, y, ys = synthetic_784(n_train, n_test)
        return X, Xs, y, ys, (f"SYNTHETIC 10-class problem in d = 784 (Fashion-MNIST is not installed): "
                              f"{n_train} train, {n_test} test")


def median_distance(X, seed=0) -> float:
    rng = np.random.default_rng(seed)
    S = X[rng.choice(X.shape[0], min(500, X.shape[0]), replace=False)]
    sq = (S ** 2).sum(1)
    D2 = np.maximum(sq[:, None] + sq[None, :] - 2 * S @ S.T, 0.0)
    return float(np.sqrt(np.median(D2[np.triu_indices(S.shape[0], 1)])))


def accuracy_and_nll(probs, ys):
    """Test accuracy and the mean of -log p(y* = label) (probabilities floored at 1e-12)."""
    labels = ys.astype(int)
    acc = float(np.mean(np.argmax(probs, axis=1) == labels))
    nll = float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12))))
    return acc, nll


# ------------------------------------------------------------------------------------------------
# Contenders: __init__(Z0, lengthscales, n, d); run(X, y, batches) -> seconds; probs(Xs) -> [n*, K]

class Varinf:
    likelihood = None

    def __init__(self, Z0, ls, n, d):
        kernel = vi.kernels.SquaredExponential(1.0, ls)
        self.model = vi.SVGP(kernel, self.make_likelihood(), Z0.copy(), num_data=n)
        self.layout, self.params = self.model._layout()
        self.trainer = core.sparse.SVGPTrainer(self.layout, self.params.get(), LR, 0.9, 0.999, 1e-8, 0)

    def prepare(self, X, y):
        return np.ascontiguousarray(X), np.ascontiguousarray(y)

    def run(self, data, batches):
        X, y = data
        part = np.ascontiguousarray(batches)
        start = time.perf_counter()
        core.testing.svgp_run_batches(self.trainer, X, y, part)
        seconds = time.perf_counter() - start
        if self.trainer.failed:
            raise RuntimeError(f"{self.name}: training diverged at step {self.trainer.failed_step}")
        return seconds

    def probs(self, Xs):
        self.params.set(self.trainer.x)
        return self.model.predict_y(Xs)[0]


class VarinfRobustMax(Varinf):
    name = "varinf RobustMax"
    library = "varinf"

    @staticmethod
    def make_likelihood():
        return vi.likelihoods.RobustMax(K)


class VarinfSoftmax(Varinf):
    name = "varinf Softmax"
    library = "varinf"

    @staticmethod
    def make_likelihood():
        return vi.likelihoods.Softmax(K, num_samples=15, seed=0)


class GPflowMultiClass:
    name = "GPflow MultiClass"
    library = "gpflow"

    def __init__(self, Z0, ls, n, d):
        import gpflow
        import tensorflow as tf

        self.tf = tf
        gpflow.config.set_default_float(np.float64)
        kernel = gpflow.kernels.SquaredExponential(variance=1.0, lengthscales=ls)
        self.model = gpflow.models.SVGP(kernel, gpflow.likelihoods.MultiClass(K), Z0.copy(), num_latent_gps=K,
                                        num_data=n, whiten=True)
        self.opt = tf.optimizers.Adam(LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.step = gpflow_adam_step(tf, self.model, self.opt)

    def prepare(self, X, y):
        return self.tf.constant(X), self.tf.constant(y[:, None])

    def run(self, data, batches):
        tf = self.tf
        X, y = data
        parts = [(tf.gather(X, rows), tf.gather(y, rows)) for rows in batches]  # outside the timing
        start = time.perf_counter()
        for Xb, yb in parts:
            loss = self.step(Xb, yb)
        loss.numpy()  # wait for the last step
        return time.perf_counter() - start

    def probs(self, Xs):
        return np.concatenate([self.model.predict_y(Xs[s:s + 1000])[0].numpy() for s in range(0, len(Xs), 1000)])


class GPyTorchSoftmax:
    name = "GPyTorch Softmax"
    library = "gpytorch"

    def __init__(self, Z0, ls, n, d):
        import gpytorch
        import torch

        self.torch, self.gpytorch = torch, gpytorch
        torch.set_default_dtype(torch.float64)
        Z = torch.tensor(Z0.copy())
        ard = np.size(ls) > 1

        class Model(gpytorch.models.ApproximateGP):
            def __init__(self):
                q = gpytorch.variational.CholeskyVariationalDistribution(Z.size(0), batch_shape=torch.Size([K]))
                base = gpytorch.variational.VariationalStrategy(self, Z, q, learn_inducing_locations=True)
                strategy = gpytorch.variational.IndependentMultitaskVariationalStrategy(base, num_tasks=K)
                super().__init__(strategy)
                self.mean_module = gpytorch.means.ZeroMean()
                self.covar_module = gpytorch.kernels.ScaleKernel(
                    gpytorch.kernels.RBFKernel(ard_num_dims=d if ard else None))

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

        self.model = Model()
        self.lik = gpytorch.likelihoods.SoftmaxLikelihood(num_features=K, num_classes=K, mixing_weights=False)
        with torch.no_grad():
            self.model.covar_module.outputscale = 1.0
            self.model.covar_module.base_kernel.lengthscale = torch.as_tensor(ls).reshape(1, -1)
            q = self.model.variational_strategy.base_variational_strategy._variational_distribution
            q.variational_mean.zero_()
            q.chol_variational_covar.copy_(torch.eye(Z.size(0)).expand(K, -1, -1))
        self.mll = gpytorch.mlls.VariationalELBO(self.lik, self.model, num_data=n)
        self.opt = torch.optim.Adam([*self.model.parameters(), *self.lik.parameters()], lr=LR,
                                    betas=(0.9, 0.999), eps=1e-8)

    def prepare(self, X, y):
        return self.torch.tensor(X), self.torch.tensor(y).long()

    def run(self, data, batches):
        torch, gpytorch = self.torch, self.gpytorch
        X, y = data
        self.model.train()
        self.lik.train()
        parts = [(X[rows], y[rows]) for rows in torch.as_tensor(batches)]  # outside the timing
        start = time.perf_counter()
        with gpytorch.settings.num_likelihood_samples(PEER_TRAIN_SAMPLES):
            for Xb, yb in parts:
                self.opt.zero_grad()
                loss = -self.mll(self.model(Xb), yb)
                loss.backward()
                self.opt.step()
        return time.perf_counter() - start

    def probs(self, Xs):
        torch, gpytorch = self.torch, self.gpytorch
        self.model.eval()
        self.lik.eval()
        torch.manual_seed(0)
        out = []
        with torch.no_grad(), gpytorch.settings.num_likelihood_samples(PREDICT_SAMPLES):
            for s in range(0, len(Xs), 500):
                out.append(self.lik(self.model(torch.tensor(Xs[s:s + 500]))).probs.mean(0).numpy())
        return np.concatenate(out)


CONTENDERS = [VarinfRobustMax, VarinfSoftmax, GPflowMultiClass, GPyTorchSoftmax]


# ------------------------------------------------------------------------------------------------
# One process per thread count

def set_threads(n: int, peers: bool):
    vi.set_num_threads(n)
    if not peers:
        return
    set_peer_threads(n)
    try:
        import torch

        torch.set_num_interop_threads(1)
    except ImportError:
        pass


def case(d: int, threads: int, steps: int, chunk: int, peers: bool, quick: bool):
    X, Xs, y, ys, description = load_problem(d, quick)
    n = X.shape[0]
    Z0 = vi.inducing.inducing_points(X, M, seed=0, method="kmeans")    # [M, d], the same for all
    ell = median_distance(X)
    ls = np.full(d, ell) if d == 64 else np.array([ell])                 # ARD at 64, one shared at 784
    rng = np.random.default_rng(1)
    batches = np.stack([rng.choice(n, B, replace=False) for _ in range(steps)]).astype(np.int64)
    print(f"d={d} threads={threads}: {description}; n={n}, n*={len(Xs)}, m={M}, B={B}, {steps} steps, "
          f"initial lengthscale {ell:.3g} ({'one per input' if d == 64 else 'shared'})", flush=True)
    contenders, data = [], []
    for cls in CONTENDERS if peers else CONTENDERS[:2]:
        try:
            c = cls(Z0, ls, n, d)
        except ImportError as exc:
            print(f"  {cls.name}: not installed ({exc}), skipped", flush=True)
            continue
        contenders.append(c)
        data.append(c.prepare(X, y))
    times = {c.name: [] for c in contenders}
    train_seconds = dict.fromkeys(times, 0.0)
    chunks = [batches[s:s + chunk] for s in range(0, steps, chunk)]
    for i, part in enumerate(chunks):
        for c, dat in zip(contenders, data):  # interleaved chunk by chunk
            seconds = c.run(dat, part)
            train_seconds[c.name] += seconds
            if i > 0:  # the first chunk is the warm-up (tracing, allocation), trained but untimed
                times[c.name].append(seconds / len(part))
    rows = []
    for c in contenders:
        start = time.perf_counter()
        acc, nll = accuracy_and_nll(c.probs(Xs), ys)
        rows.append({"contender": c.name, "library": c.library, "d": d, "threads": threads, "m": M, "B": B,
                     "n": n, "steps": steps, "ms_per_step": 1e3 * float(np.median(times[c.name])),
                     "ms_per_step_p25": 1e3 * float(np.percentile(times[c.name], 25)),
                     "ms_per_step_p75": 1e3 * float(np.percentile(times[c.name], 75)),
                     "train_seconds": train_seconds[c.name], "test_accuracy": acc, "test_nll": nll,
                     "predict_seconds": time.perf_counter() - start, "data": description,
                     "load_avg_1min": os.getloadavg()[0]})
        r = rows[-1]
        print(f"  {c.name:18s} {r['ms_per_step']:8.2f} ms/step (IQR {r['ms_per_step_p25']:.2f}-"
              f"{r['ms_per_step_p75']:.2f}), test accuracy {acc:.4f}, NLL {nll:.4f} after {steps} steps", flush=True)
    return rows


def breakdown(quick: bool):
    """Where varinf's step goes at d = 64 and 784, one thread: the whole ELBO + gradient of a
    batch (svgp_elbo_grad_x), the same with a Gaussian likelihood on the 10 latent columns (the GP
    part alone), the multi-class likelihood's variational expectations alone on B rows, the
    kernel's K(X_batch, Z) and its gradient alone (the C++ kernel calls the step makes), the three
    numpy GEMMs that would give the same sums (the cross term of r2, and the row sums of G (x - z)
    and G (x - z)^2 that the kernel forms by a matrix-vector product per row of Z), and the public
    SVGP.fit per step."""
    rows = []
    reps = 5 if quick else 40
    for d in (64, 784):
        X, _, y, _, _ = load_problem(d, True)
        Z0 = vi.inducing.inducing_points(X, M, seed=0, method="kmeans")
        ls = np.full(d, median_distance(X)) if d == 64 else np.array([median_distance(X)])
        rows_b = np.random.default_rng(2).choice(X.shape[0], B, replace=False)
        Xb, yb = np.ascontiguousarray(X[rows_b]), y[rows_b]
        Yg = np.zeros((B, K))
        Yg[np.arange(B), yb.astype(int)] = 1.0
        fns = {}
        for name, lik, yy in (("RobustMax", vi.likelihoods.RobustMax(K), yb),
                              ("Softmax", vi.likelihoods.Softmax(K, num_samples=15, seed=0), yb),
                              ("Gaussian x10 (GP part)", vi.likelihoods.Gaussian(0.1), Yg)):
            model = vi.SVGP(vi.kernels.SquaredExponential(1.0, ls), lik, Z0.copy(), num_data=X.shape[0],
                            num_latent_gps=K)
            layout, pv = model._layout()
            x = pv.get()
            fns[f"ELBO+grad, {name}"] = (lambda layout=layout, x=x, yy=yy:
                                         core.sparse.svgp_elbo_grad_x(layout, x, Xb, yy))
            if name != "Gaussian x10 (GP part)":
                mu, var = model.predict_f(Xb)
                fns[f"likelihood alone, {name}"] = (lambda lik=lik, mu=mu, var=var:
                                                    lik.variational_expectations(yb, mu, var))
        kern = vi.kernels.SquaredExponential(1.0, ls)
        kc, th = kern.core(), kern.theta()
        Kbar = np.random.default_rng(3).standard_normal((M, B))
        fns["kernel alone: K(X_batch, Z)"] = lambda: kc.K(th, Xb, Z0)
        fns["kernel alone: grad (theta, Z)"] = lambda: kc.grad(th, Z0, Xb, Kbar, True)
        Lbar = np.random.default_rng(4).standard_normal((M, M))
        fns["kernel alone: K(Z, Z) and its grad"] = lambda: (kc.K_sym(th, Z0), kc.grad_sym(th, Z0, Lbar + Lbar.T, True))
        fns["numpy: G X, G X^2, X Z^T (the kernel's sums as GEMMs)"] = lambda: (Kbar @ Xb, Kbar @ (Xb * Xb), Xb @ Z0.T)
        for name, fn in fns.items():
            fn()
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            rows.append({"d": d, "call": name, "ms": 1e3 * float(np.median(ts))})
            print(f"  d={d} {name:52s} {rows[-1]['ms']:.3f} ms", flush=True)
        # the public path: SVGP.fit, which draws its own batches (per step, over fit calls of 50 steps)
        model = vi.SVGP(vi.kernels.SquaredExponential(1.0, ls), vi.likelihoods.RobustMax(K), Z0.copy(),
                        num_data=X.shape[0])
        model.fit(X, y, iterations=10, batch_size=B, progress=False)
        ts = []
        for r in range(2 if quick else 4):
            t0 = time.perf_counter()
            model.fit(X, y, iterations=50, batch_size=B, progress=False, seed=r)
            ts.append((time.perf_counter() - t0) / 50)
        rows.append({"d": d, "call": "SVGP.fit step, RobustMax (its own batches)", "ms": 1e3 * float(np.median(ts))})
        print(f"  d={d} {rows[-1]['call']:52s} {rows[-1]['ms']:.3f} ms", flush=True)
    return rows


def worker(args):
    peers = not args.skip_peers
    set_threads(args.worker, peers)
    rows, extra = [], {}
    with threadpool_limits(limits=args.worker):
        for d, (steps1, steps_more, chunk) in PLAN[args.quick].items():
            rows += case(d, args.worker, steps1 if args.worker == 1 else steps_more, chunk, peers, args.quick)
        if args.worker == 1:
            extra["breakdown"] = breakdown(args.quick)
    if peers:
        try:
            import tensorflow as tf

            extra["tensorflow"] = tf.__version__  # its distribution may be tensorflow-cpu, missed by common.py
        except ImportError:
            pass
    with open(args.out, "w") as f:
        json.dump({"rows": rows, **extra}, f)


def main() -> None:
    args = per_thread_args(__doc__, "few steps, small d = 784 problem (CI smoke run)")
    if args.worker:
        worker(args)
        return
    peers = not args.skip_peers
    if peers:
        missing = [name for name in ("gpflow", "gpytorch") if not _importable(name)]
        if missing:
            print(f"note: {', '.join(missing)} not installed here; running "
                  f"{'varinf alone' if len(missing) == 2 else 'without ' + missing[0]} "
                  f"(the peers are in .venv-peers)", flush=True)
    started = time.time()
    rates = gemm_rates(args.quick)  # Eigen's GEMM in this build, before the workers run
    rows, breakdown_rows, tf_version = [], [], None
    for result in run_per_thread(__file__, args).values():
        rows += result["rows"]
        breakdown_rows += result.get("breakdown", [])
        tf_version = result.get("tensorflow", tf_version)
    same = {(q["d"], q["threads"], q["contender"]): q["ms_per_step"] for q in rows}
    for r in rows:
        r["x_varinf_robustmax"] = r["ms_per_step"] / same[(r["d"], r["threads"], "varinf RobustMax")]
        r["x_varinf_softmax"] = r["ms_per_step"] / same[(r["d"], r["threads"], "varinf Softmax")]
        r["gemm_gflops"] = rates.get(("float64", r["threads"]))
    add_roofline(rows, lambda r: step_flops(r["d"]), lambda r: r["ms_per_step"] / 1e3, "float64", rates)
    descriptions = sorted({r["data"] for r in rows})
    columns = [("d", "d"), ("threads", "threads"), ("contender", "contender"), ("ms_per_step", "ms/step"),
               ("x_varinf_robustmax", "x varinf RobustMax"), ("x_varinf_softmax", "x varinf Softmax"),
               *roofline_columns("step"), ("steps", "steps"), ("test_accuracy", "test accuracy"), ("test_nll", "test NLL"),
               ("load_avg_1min", "load")]
    notes = [f"data: {desc}" for desc in descriptions] + [
        f"model GFLOP/step: 3 m^2 B (G + L) + 3.7 m^3 G + 10 (B + m) m d with L = {K} latent GPs, G = 1 "
        "shared kernel (docs/math.md 9.5; the likelihood's transcendentals not counted), the same for every "
        "contender; GFLOP/s = that / the step's time; % GEMM = of Eigen's float64 GEMM rate in this build "
        "at the row's thread count",
        f"m = {M} (k-means start, learned, shared by the 10 latent GPs), B = {B}, one shared SE kernel (ARD at "
        "d = 64, one lengthscale at d = 784, starting at the median distance), whitened, full q_sqrt, zero mean, "
        "float64, Adam lr 0.01, the same minibatches for all",
        "accuracy after the steps of its row (at 1 thread the longer run); ms/step = median over chunks of "
        "10 steps, contenders interleaved chunk by chunk, the first chunk untimed",
        "likelihood terms: varinf RobustMax and GPflow MultiClass: the same RobustMax model (eps 1e-3, 20 "
        "Gauss-Hermite points); varinf Softmax: 15 reparameterised samples per row, fresh at every step "
        "(drawn from the seed, the step and the row's place in the batch); GPyTorch "
        f"Softmax: {PEER_TRAIN_SAMPLES} fresh samples per row per step (set via num_likelihood_samples; its default "
        f"is 10), {PREDICT_SAMPLES} for predictions"]
    if tf_version:
        notes.append(f"tensorflow {tf_version}")
    extra = []
    if breakdown_rows:
        extra.append(("varinf, 1 thread: one ELBO + gradient call on a batch of 256 vs the likelihood alone "
                      "(median ms)", breakdown_rows, [("d", "d"), ("call", "call"), ("ms", "ms")]))
    area = "multiclass" if args.threads == [1, 2] else "multiclass_threads" + "_".join(map(str, args.threads))
    path = write_results(area, "Multi-class SVGP (K = 10, m = 100, B = 256): step time and test accuracy",
                         rows, columns, args.quick, notes=notes, extra_tables=extra)
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
