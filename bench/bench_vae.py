"""VAE training speed and accuracy: varinf vs PyTorch CPU vs the numpy reference.

    python bench/bench_vae.py            # 784-400-20 on binarised Fashion-MNIST + 64-128-8 on digits
    python bench/bench_vae.py --quick    # digits only, seconds, PyTorch optional

Both trainers see the same data already in memory (no DataLoader), the same architecture,
the same initial weights (varinf's, drawn by PyTorch's nn.Linear rule), batch 128, Adam 1e-3
(PyTorch's rule in both), the loss -mean_i ELBO_i (Bernoulli on logits, analytic KL) and the
same number of epochs; each draws its own shuffling and noise. The epochs of the two run interleaved (one
varinf epoch, then one PyTorch epoch, from varinf's epoch callback) so that machine noise hits
both alike; PyTorch keeps its own OpenMP defaults (it is imported first). Both trained models are scored by one evaluator: varinf's per-datum ELBO (k = 1,
one fixed seed) on the held-out images, after copying PyTorch's weights into a vi.VAE.
Times are medians over the epochs; the numpy reference is timed over a number of steps and
scaled to an epoch. Roofline (varinf and PyTorch): the FLOP model of an epoch (epoch_flops),
the GFLOP/s achieved and their percentage of Eigen's float32 GEMM rate in this process
(common.gemm_rates) at the thread count varinf's training loop ran on (PyTorch: the row's).
Results: a markdown table on stdout and bench/results/vae.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

# PyTorch is imported before varinf so that its OpenMP runtime starts with its own defaults
# (varinf sets OMP_WAIT_POLICY=PASSIVE for its runtime when the variable is unset).
try:
    import torch
except ImportError:  # the bench runs without PyTorch, reporting varinf and numpy only
    torch = None

import varinf as vi  # noqa: E402
from varinf.reference import vae as ref  # noqa: E402
from common import add_roofline, gemm_rates, gemm_rates_line, machine_info, results_path  # noqa: E402


# ------------------------------------------------------------------ PyTorch side


class TorchVAE:
    """The same VAE in PyTorch: encoder D-H-2J, decoder J-H-D, ReLU, Bernoulli logits."""

    def __init__(self, sizes_enc, sizes_dec, seed):
        torch.manual_seed(seed)
        self.enc = self._mlp(sizes_enc)
        self.dec = self._mlp(sizes_dec)
        self.params = list(self.enc.parameters()) + list(self.dec.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-3)
        self.J = sizes_enc[-1] // 2

    @staticmethod
    def _mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i + 2 < len(sizes):
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers)

    def epoch(self, X, batch_size):
        """One epoch over X (a float32 tensor in memory); returns the mean minibatch loss."""
        n = X.shape[0]
        perm = torch.randperm(n)
        total = 0.0
        for start in range(0, n, batch_size):
            xb = X[perm[start:start + batch_size]]
            mu, logvar = self.enc(xb).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = self.dec(z)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (bce + kld) / xb.shape[0]
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += loss.item()
        return total / math.ceil(n / batch_size)

    def _named_linears(self):
        linears = [m for m in list(self.enc) + list(self.dec) if isinstance(m, torch.nn.Linear)]
        n_enc = sum(isinstance(m, torch.nn.Linear) for m in self.enc)
        return [(f"encoder.{i}" if i < n_enc else f"decoder.{i - n_enc}", lin) for i, lin in enumerate(linears)]

    def to_varinf(self, model: vi.VAE) -> vi.VAE:
        values = {}
        for name, lin in self._named_linears():
            values[name + ".weight"] = lin.weight.detach().numpy()
            values[name + ".bias"] = lin.bias.detach().numpy()
        return model.set_weights(values)

    def from_varinf(self, model: vi.VAE) -> None:
        with torch.no_grad():
            for name, lin in self._named_linears():
                lin.weight.copy_(torch.from_numpy(model.weights[name + ".weight"].copy()))
                lin.bias.copy_(torch.from_numpy(model.weights[name + ".bias"].copy()))


# ------------------------------------------------------------------ one comparison


def epoch_flops(sizes_enc, sizes_dec, n: int) -> float:
    """One epoch of n rows, one latent sample per row (docs/math.md 9.6): 2 flops forward and 4
    backward per weight and row, 6 n (W_enc + W_dec) with W the sum of in x out over a network's
    layers, less the 2 n D H1 of the input gradient of the encoder's first layer [D, H1], which
    is not formed. Biases, activations and the likelihood's exp/log are not counted."""
    weights = sum(a * b for sizes in (sizes_enc, sizes_dec) for a, b in zip(sizes[:-1], sizes[1:]))
    return 6.0 * n * weights - 2.0 * n * sizes_enc[0] * sizes_enc[1]


def numpy_epoch_seconds(sizes_enc, sizes_dec, X, batch_size, steps, threads):
    """Seconds per epoch of the numpy reference, timed over `steps` minibatches."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rng = np.random.default_rng(0)
    params = ref.init_params(sizes_enc, sizes_dec, rng, dtype=np.float32)
    adam = ref.Adam(ref.param_list(params))
    steps = min(steps, math.ceil(X.shape[0] / batch_size))
    sub = X[: steps * batch_size]
    limits = threadpool_limits(threads) if threadpool_limits else None
    try:
        t = time.perf_counter()
        ref.train_epoch(params, adam, sub, batch_size, rng)
        elapsed = time.perf_counter() - t
    finally:
        if limits is not None:
            limits.unregister()
    return elapsed / steps * math.ceil(X.shape[0] / batch_size)


def compare(name, Xtr, Xte, hidden, latent, epochs, threads, ref_steps, rates, batch_size=128, seed=0):
    D = Xtr.shape[1]
    sizes_enc, sizes_dec = [D, *hidden, 2 * latent], [latent, *hidden[::-1], D]
    vi.set_num_threads(threads)
    have_torch = torch is not None
    if have_torch:
        torch.set_num_threads(threads)
        tmodel = TorchVAE(sizes_enc, sizes_dec, seed)
        Xtr_t = torch.from_numpy(Xtr)
    vi_times, torch_times, marks = [], [], [time.perf_counter()]

    def callback(model, info):
        vi_times.append(time.perf_counter() - marks[-1])
        if have_torch:
            t = time.perf_counter()
            tmodel.epoch(Xtr_t, batch_size)
            torch_times.append(time.perf_counter() - t)
            time.sleep(0.05)  # let PyTorch's spinning OpenMP threads go idle before varinf's epoch
        marks.append(time.perf_counter())
        return False

    model = vi.VAE(D, latent, hidden=hidden, seed=seed)
    if have_torch:
        tmodel.from_varinf(model)  # the same initial weights: the accuracy columns compare training
    model.fit(Xtr, epochs=epochs, batch_size=batch_size, learning_rate=1e-3, callback=callback, progress=False)
    row = {
        "model": name,
        "architecture": "-".join(str(s) for s in [D, *hidden, latent]),
        "n_train": int(Xtr.shape[0]),
        "epochs": epochs,
        "threads": threads,
        "varinf_loop_threads": model.threads_,
        "varinf_s_per_epoch": statistics.median(vi_times),
        "varinf_test_elbo": float(model.elbo(Xte, seed=123).mean()),
        "numpy_s_per_epoch": numpy_epoch_seconds(sizes_enc, sizes_dec, Xtr, batch_size, ref_steps, threads),
        "numpy_steps_timed": min(ref_steps, math.ceil(Xtr.shape[0] / batch_size)),
    }
    row["speedup_vs_numpy"] = row["numpy_s_per_epoch"] / row["varinf_s_per_epoch"]
    if have_torch:
        scored = tmodel.to_varinf(vi.VAE(D, latent, hidden=hidden, seed=seed))
        row.update({
            "torch_s_per_epoch": statistics.median(torch_times),
            "torch_test_elbo": float(scored.elbo(Xte, seed=123).mean()),
        })
        row["speedup_vs_torch"] = row["torch_s_per_epoch"] / row["varinf_s_per_epoch"]
    flops = epoch_flops(sizes_enc, sizes_dec, Xtr.shape[0])
    # varinf's at the thread count its training loop ran on (it may take fewer than asked for)
    for who, threads_key in (("varinf", "varinf_loop_threads"), ("torch", "threads")):
        add_roofline([row], lambda r: flops, lambda r: r.get(f"{who}_s_per_epoch"), "float32", rates, f"{who}_",
                     threads_key)
    return row


# ------------------------------------------------------------------ report


def table(rows):
    cols = [("model", "model"), ("architecture", "arch"), ("threads", "threads"), ("epochs", "epochs"),
            ("varinf_s_per_epoch", "varinf s/epoch"), ("torch_s_per_epoch", "torch s/epoch"),
            ("speedup_vs_torch", "varinf vs torch"), ("varinf_model_gflop", "model GFLOP/epoch"),
            ("varinf_gflops", "varinf GFLOP/s"), ("varinf_pct_gemm", "varinf % GEMM"),
            ("torch_gflops", "torch GFLOP/s"), ("torch_pct_gemm", "torch % GEMM"), ("numpy_s_per_epoch", "numpy s/epoch"),
            ("speedup_vs_numpy", "varinf vs numpy"), ("varinf_test_elbo", "test ELBO varinf"),
            ("torch_test_elbo", "test ELBO torch")]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if v is None:
                cells.append("-")
            elif key.startswith("speedup"):
                cells.append(f"{v:.2f}x")
            elif isinstance(v, float):
                cells.append(f"{v:.4f}" if "s_per" in key else f"{v:.2f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only, a few seconds")
    parser.add_argument("--epochs", type=int, default=4, help="Fashion-MNIST epochs (default 4)")
    parser.add_argument("--small-epochs", type=int, default=30, help="digits epochs (default 30)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--ref-steps", type=int, default=60, help="minibatches timed for the numpy reference")
    parser.add_argument("--out", default=None, help="results file (default: common.results_path)")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rates = gemm_rates(args.quick)  # before the timings, once

    X, _ = vi.datasets.load_digits_binarized()
    Xtr_d, Xte_d = vi.datasets.train_test_split(X, test_fraction=0.2, seed=0)
    rows = []
    small_epochs = 10 if args.quick else args.small_epochs
    for t in threads:
        rows.append(compare("digits", Xtr_d, Xte_d, (128,), 8, small_epochs, t, ref_steps=12, rates=rates))
    if not args.quick:
        Xtr, _ = vi.datasets.load_fashion_mnist_binarized("train")
        Xte, _ = vi.datasets.load_fashion_mnist_binarized("test")
        for t in threads:
            rows.append(compare("fashion-mnist", Xtr, Xte, (400,), 20, args.epochs, t, ref_steps=args.ref_steps, rates=rates))

    load = os.getloadavg()
    machine = machine_info(args.quick)
    print(table(rows))
    print("\n" + gemm_rates_line(machine) + "; model GFLOP/epoch: 6 n (W_enc + W_dec) - 2 n D H1 "
          "(docs/math.md 9.6), % GEMM of the float32 rate at the thread count the loop ran on (torch: the row's)")
    print(f"\nvarinf {vi.__version__} ({vi.build_variant}); "
          + (f"torch {torch.__version__}" if torch is not None else "torch not installed")
          + f"; numpy {np.__version__}; {platform.processor() or platform.machine()}, {os.cpu_count()} cpus"
          + f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    with open(args.out or results_path("vae", args.quick), "w") as f:
        json.dump({"area": "vae", "quick": args.quick, "rows": rows,
                   "torch": None if torch is None else torch.__version__,
                   "numpy": np.__version__, "cpus": os.cpu_count(), "load_average": load,
                   "machine": machine}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
