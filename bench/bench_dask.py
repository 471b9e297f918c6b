"""varinf on Dask: the same model in one process and on a LocalCluster, in one run.

    python bench/bench_dask.py [--quick]

- SGPR: one evaluation of the collapsed bound with its gradient at n = 10^6, d = 8, m = 256
  (quick: n = 2 x 10^4, m = 32), in process on 2 threads against a LocalCluster of 2 worker
  processes x 1 thread holding the data persisted in 16 chunks. Also the client's peak Python
  allocation during the cluster evaluation (tracemalloc) next to the data's size, and the
  bytes one evaluation moves.
- SVGP: a training step at m = 256 with a global batch of 4096 (quick: m = 32, batch 512), in
  process (C++ loop, 2 threads) against the cluster's synchronous data-parallel steps (one actor
  per worker); both from the same start with the same seed, so they take the same steps, and
  the test NLPD after them.
- Latency: a plain task round trip through the scheduler, an actor call round trip, and the
  time of 2000 tiny tasks (the scheduler's throughput, which bounds how many chunks pay).
- The cost model behind the projection of one SGPR evaluation at n = 10^9 on 100 workers.

Writes bench/results/dask.json (quick runs: bench/results/quick/dask.json).
"""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
from common import parse_args, run_interleaved, threads, write_results

import varinf as vi

D = 8


def make_data(n, n_test=2000, seed=0):
    """Synthetic regression in d = 8 (as bench_sparse.py)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n + n_test, D))
    f = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + 0.3 * X[:, 2] * X[:, 3] + 0.2 * np.tanh(X[:, 4:].sum(1))
    y = f + 0.1 * rng.standard_normal(len(f))
    return X[:n], y[:n], X[n:], y[n:]


def sgpr_rows(X, y, m, chunks, client, repeats):
    """In-process vs cluster evaluation of the SGPR bound with its gradient."""
    import dask.array as da
    Z = X[np.random.default_rng(1).choice(len(X), m, replace=False)] + 0.01
    kernel = lambda: vi.kernels.SquaredExponential(1.0, np.ones(D))  # noqa: E731
    local = vi.SGPR(X, y, kernel(), Z, noise_variance=0.1)
    Xd, yd = client.persist([da.from_array(X, chunks=(len(X) // chunks, D)), da.from_array(y, chunks=len(X) // chunks)])
    dist = vi.SGPR(Xd, yd, kernel(), Z, noise_variance=0.1)
    with threads(2):
        t = run_interleaved({"local": lambda: local.elbo(return_grad=True),
                             "cluster": lambda: dist.elbo(return_grad=True)}, repeats=repeats)
    (value, grad), (dvalue, dgrad) = t["local"][1], t["cluster"][1]
    tracemalloc.start()
    dist.elbo(return_grad=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    n = len(X)
    flops = 3.0 * n * m * m  # docs/math.md section 9.3: the data side, Psi and Kufbar
    per_chunk = 8 * (m * m + 2 * m + 4) + 8 * (local.kernel.theta().size + m * D)  # statistics + gradient
    rows = [{"what": f"SGPR bound + gradient, n={n}, m={m}", "where": where, "seconds": t[key][0],
             "ratio": t[key][0] / t["local"][0], "gflops": flops / t[key][0] / 1e9,
             "rel_error": abs(v - value) / abs(value)}
            for where, key, v in (("in process, 2 threads", "local", value),
                                  ("LocalCluster 2 x 1, persisted", "cluster", dvalue))]
    memory = {"data_mb": (X.nbytes + y.nbytes) / 1e6, "client_peak_mb": peak / 1e6,
              "bytes_back_per_chunk": per_chunk, "chunks": chunks,
              "rows_per_second_per_worker": n / 2 / t["cluster"][0],
              "grad_max_rel_diff": float(np.max(np.abs(dgrad - grad)) / np.max(np.abs(grad)))}
    return rows, memory


def svgp_rows(X, y, Xt, yt, m, batch, steps, client):
    """In-process vs cluster SVGP training steps from the same start and seed."""
    import dask.array as da
    Z = X[np.random.default_rng(2).choice(len(X), m, replace=False)].copy()
    make = lambda: vi.SVGP(vi.kernels.SquaredExponential(1.0, np.ones(D)), vi.likelihoods.Gaussian(0.1), Z.copy(),  # noqa: E731
                           num_data=len(X))
    Xd, yd = client.persist([da.from_array(X, chunks=(len(X) // 16, D)), da.from_array(y, chunks=len(X) // 16)])
    out = []
    for where in ("in process, 2 threads", "LocalCluster 2 x 1, persisted"):
        model = make()
        data = (X, y) if where.startswith("in") else (Xd, yd)
        with threads(2):
            model.fit(*data, iterations=3, batch_size=batch, seed=5, progress=False)  # warm up (actors, pools)
            start = time.perf_counter()
            model.fit(*data, iterations=steps, batch_size=batch, seed=6, progress=False)
            seconds = time.perf_counter() - start
        out.append((where, seconds / steps, float(-np.mean(model.predict_log_density(Xt, yt))), model))
    base = out[0][1]
    layout, params = out[0][3]._layout()
    x = params.get()
    _, gx, gv, _ = vi._core.sparse.svgp_elbo_grad_x(layout, x, np.zeros((0, D)), np.zeros(0), scale=0.0)
    traffic = 8 * (x.size + 1 + gx.size + gv.size)  # x out; (ELBO, d/dx, d/dvalues) back
    return [{"what": f"SVGP step, m={m}, batch={batch}", "where": w, "seconds": s, "ratio": s / base,
             "gflops": 6.0 * m * m * batch / s / 1e9, "test_nlpd": nlpd,
             "bytes_per_step_per_worker": traffic if w.startswith("Local") else None}
            for w, s, nlpd, _ in out]


def latency_rows(client):
    """Median round trips: a task through the scheduler, an actor call straight to its worker."""
    class Echo:
        def ping(self, x):
            return x

    def task_trip():
        client.submit(lambda x: x, np.random.random(), pure=False).result()

    def many_tasks(count=2000):
        client.gather(client.map(lambda i: i, range(count), pure=False))

    actor = client.submit(Echo, actor=True).result()
    t = run_interleaved({"task": task_trip, "actor": lambda: actor.ping(1).result()}, repeats=50, warmup=5)
    many = run_interleaved({"many": many_tasks}, repeats=3)["many"][0]
    return [{"what": "round trip", "where": "task via the scheduler", "seconds": t["task"][0]},
            {"what": "round trip", "where": "actor call", "seconds": t["actor"][0]},
            {"what": "2000 tiny tasks (scheduler throughput)", "where": "LocalCluster 2 x 1", "seconds": many}]


def main():
    args = parse_args(__doc__)
    from distributed import Client, LocalCluster
    n, m, batch, steps, repeats = (20_000, 32, 512, 20, 3) if args.quick else (1_000_000, 256, 4096, 30, 3)
    X, y, Xt, yt = make_data(n)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        sgpr, memory = sgpr_rows(X, y, m, 16, client, repeats)
        rows = sgpr + svgp_rows(X, y, Xt, yt, m, batch, steps, client) + latency_rows(client)
    memory_row = [memory]
    notes = [f"client peak allocation during a cluster evaluation: {memory['client_peak_mb']:.1f} MB for "
             f"{memory['data_mb']:.1f} MB of data; {memory['bytes_back_per_chunk']} bytes back per chunk and pass",
             "SVGP bytes per step per worker: x out, (ELBO, d/dx, d/dvalues) back (8 bytes a number)",
             "SGPR rows per second per worker: n / (2 workers x the cluster's time for one evaluation)",
             f"machine: {os.cpu_count()} cores; in process and the cluster share them"]
    columns = [("what", "benchmark"), ("where", "where"), ("seconds", "seconds"), ("ratio", "vs in process"),
               ("gflops", "GFLOP/s"), ("rel_error", "rel. error of the bound"), ("test_nlpd", "test NLPD"),
               ("bytes_per_step_per_worker", "bytes/step/worker")]
    memory_columns = [(k, k) for k in memory]
    write_results("dask", "varinf on Dask: one process against a LocalCluster", rows, columns, args.quick,
                  notes, extra_tables=[("Memory and traffic", memory_row, memory_columns)])


if __name__ == "__main__":
    main()
