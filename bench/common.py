"""What the benchmark scripts share: timing, thread control, machine facts, results files.

Every figure is measured side by side in one run (the machine is shared and noisy): contenders
are interleaved within each repeat, each is warmed up once, and the median is reported.

    from common import parse_args, run_interleaved, threads, write_results

Roofline: every process measures the GEMM rate of the loaded build once (gemm_rates) and
reports a hot path as achieved GFLOP/s and as a percentage of that rate (roofline), from the
path's FLOP model (docs/math.md section 9).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import varinf as vi
from varinf._loader import core

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def results_path(area: str, quick: bool) -> Path:
    """bench/results/<area>.json; quick runs go to bench/results/quick/ (not committed), so
    that they never overwrite the recorded full results."""
    directory = RESULTS_DIR / "quick" if quick else RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{area}.json"

PACKAGES = ("varinf", "numpy", "scipy", "scikit-learn", "threadpoolctl", "torch", "gpytorch",
            "gpflow", "tensorflow")


def parse_args(doc: str, argv=None) -> argparse.Namespace:
    """The command line every bench script takes: ``[--quick]``."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes that finish in seconds (CI smoke run)")
    return parser.parse_args(argv)


def optional_import(name: str):
    """The module, or None when it is not installed (its columns are then skipped)."""
    try:
        return __import__(name)
    except ImportError:
        return None


@contextlib.contextmanager
def threads(n: int):
    """Run varinf (vi.set_num_threads) and numpy/scipy's BLAS and OpenMP pools
    (threadpoolctl) on ``n`` threads; restore both afterwards."""
    before = vi.get_num_threads()
    vi.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        vi.set_num_threads(before)


def run_interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Time every callable in ``fns`` (name -> fn()) ``repeats`` times, interleaved, after
    ``warmup`` untimed calls each. Returns name -> (median seconds, last result)."""
    results = {}
    for _ in range(warmup):
        for name, fn in fns.items():
            results[name] = fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (float(np.median(times[name])), results[name]) for name in fns}


GEMM_DTYPES = ("float64", "float32")
GEMM_THREADS = (1, 2)
GEMM_N = {False: 1024, True: 512}  # by quick


GEMM_ROUNDS = 5


@functools.lru_cache(maxsize=None)
def gemm_rates(quick: bool) -> dict:
    """{(dtype, threads): GFLOP/s} of Eigen's [n, n] x [n, n] product in the loaded build of the
    core (n = GEMM_N[quick]) for float64 and float32 at 1 and 2 threads: the yardstick of
    roofline(). Each is the median of GEMM_ROUNDS timed products (each after a warm-up one),
    the four taken in turn round by round so that a burst of load on a shared machine hits all
    alike. Measured once per process (~2 s; quick ~0.5 s)."""
    keys = [(dtype, t) for dtype in GEMM_DTYPES for t in GEMM_THREADS]
    samples = {key: [] for key in keys}
    for _ in range(GEMM_ROUNDS):
        for dtype, t in keys:
            samples[(dtype, t)].append(core.testing.gemm_gflops(GEMM_N[quick], dtype, t, 1))
    return {key: float(np.median(v)) for key, v in samples.items()}


def gemm_rate_rows(rates: dict) -> list:
    """The rates as table rows: variant, dtype, threads, GFLOP/s."""
    return [{"variant": vi.build_variant, "dtype": dtype, "threads": t, "gflops": g}
            for (dtype, t), g in rates.items()]


GEMM_RATE_COLUMNS = [("variant", "variant"), ("dtype", "dtype"), ("threads", "threads"), ("gflops", "GFLOP/s")]


def roofline(flops: float, seconds: float, dtype: str, threads: int, rates: dict) -> dict:
    """{"model_gflop": flops / 1e9, "gflops": achieved GFLOP/s, "pct_gemm": that as % of the
    GEMM rate at (dtype, threads)} for a path whose FLOP model gives ``flops`` and that took
    ``seconds``. pct_gemm is None for a thread count without a measured rate."""
    gflops = flops / seconds / 1e9
    rate = rates.get((dtype, threads))
    return {"model_gflop": flops / 1e9, "gflops": gflops, "pct_gemm": 100.0 * gflops / rate if rate else None}


def add_roofline(rows: list, flops, seconds, dtype: str, rates: dict, prefix: str = "",
                 threads_key: str = "threads") -> list:
    """Each row updated with roofline(flops(row), seconds(row), dtype, row[threads_key], rates),
    its keys prefixed by ``prefix`` (for a table with several contenders per row); rows
    without a time (seconds(row) is None) are left alone. Returns the rows."""
    for row in rows:
        s = seconds(row)
        if s:
            row.update({prefix + k: v for k, v in roofline(flops(row), s, dtype, row[threads_key], rates).items()})
    return rows


def roofline_columns(unit: str, prefix: str = "", label: str = "") -> list:
    """The table columns of add_roofline's keys: the model's GFLOP per ``unit``, GFLOP/s and
    % GEMM (headers prefixed by ``label``)."""
    return [(prefix + "model_gflop", f"{label}model GFLOP/{unit}"), (prefix + "gflops", f"{label}GFLOP/s"),
            (prefix + "pct_gemm", f"{label}% GEMM")]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_info(quick=None) -> dict:
    """CPU, core counts, load, date, varinf build variant and package versions; given ``quick``
    (True or False) also the GEMM rates of this process (gemm_rates)."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "nproc": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "varinf_build_variant": vi.build_variant,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "versions": _versions(),
    }
    if quick is not None:
        info["gemm_gflops"] = gemm_rate_rows(gemm_rates(quick))
    return info


def gemm_rates_line(info: dict) -> str:
    """"Eigen GEMM GFLOP/s (variant, this process): float64 45.1 (1 thread), 80.2 (2 threads);
    float32 ..." from machine_info(quick)."""
    by_dtype = {}
    for r in info.get("gemm_gflops", ()):
        threads = f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
        by_dtype.setdefault(r["dtype"], []).append(f"{r['gflops']:.1f} ({threads})")
    return (f"Eigen GEMM GFLOP/s ({info['varinf_build_variant']}, this process): "
            + "; ".join(f"{d} {', '.join(v)}" for d, v in by_dtype.items()))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
            return f"{value:.2e}"
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.1f}"
    return str(value)


def markdown_table(rows: list, columns=None) -> str:
    """A markdown table of dict rows; ``columns`` is [(key, header), ...] (default: the keys
    of the first row)."""
    if not rows:
        return "(no rows)"
    columns = columns or [(k, k) for k in rows[0]]
    lines = ["| " + " | ".join(h for _, h in columns) + " |",
             "|" + "|".join("---:" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(area: str, title: str, rows: list, columns, quick: bool, notes=(),
                  extra_tables=()) -> Path:
    """Print the markdown tables and write bench/results/<area>.json. ``extra_tables`` are
    further (title, rows, columns) tables after the main one."""
    info = machine_info(quick)
    print(f"## {title}\n")
    print(f"{info['date']}, {info['cpu']}, {info['nproc']} cores, load {info['load_average']}, "
          f"varinf {info['varinf_build_variant']}{' (quick)' if quick else ''}\n")
    print(gemm_rates_line(info) + "\n")
    print(markdown_table(rows, columns))
    for extra_title, extra_rows, extra_columns in extra_tables:
        print(f"\n### {extra_title}\n\n{markdown_table(extra_rows, extra_columns)}")
    if notes:
        print("\n" + "\n".join(f"- {note}" for note in notes))
    path = results_path(area, quick)
    payload = {"area": area, "title": title, "quick": quick, "machine": info,
               "columns": [list(c) for c in columns], "rows": rows,
               "tables": [{"title": t, "columns": [list(c) for c in cols], "rows": r}
                          for t, r, cols in extra_tables],
               "notes": list(notes)}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def per_thread_args(doc: str, quick_help: str) -> argparse.Namespace:
    """The arguments of a benchmark that runs each thread count in its own process (TensorFlow
    fixes its thread pools at start-up): --quick, --skip-peers, --threads, and the hidden --worker T
    and --out of the worker processes run_per_thread starts."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--skip-peers", action="store_true", help="varinf only")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_per_thread(script: str, args: argparse.Namespace) -> dict:
    """{threads: what the worker wrote} of ``script`` run with --worker T for each T in
    args.threads, each in a fresh process whose OpenMP, BLAS and MKL thread counts are T."""
    results = {}
    for t in args.threads:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t),
                       TF_CPP_MIN_LOG_LEVEL="2")
            command = [sys.executable, os.path.abspath(script), "--worker", str(t), "--out", out.name]
            command += (["--quick"] if args.quick else []) + (["--skip-peers"] if args.skip_peers else [])
            subprocess.run(command, check=True, env=env)
            with open(out.name) as f:
                results[t] = json.load(f)
    return results


def gpflow_adam_step(tf, model, opt):
    """One compiled Adam step of a GPflow model on a batch (Xb, yb): the training loop every
    GPflow contender runs."""
    @tf.function
    def step(Xb, yb):
        with tf.GradientTape() as tape:
            loss = model.training_loss((Xb, yb))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def set_peer_threads(threads: int) -> None:
    """TensorFlow's intra-op pool and torch's threads, where installed (TensorFlow's pools are
    fixed once it has run: call this first in a process)."""
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
