"""SVGP trained by synchronous data-parallel steps on a Dask cluster (docs/math.md section 10.3).

One actor per worker holds that worker's chunks of X and y (they do not move) and the model's
C++ layout. Every actor draws each global minibatch from the same seed with the trainer's own
BatchSampler, so the batches are those of an in-process fit with that seed, and evaluates the
ELBO gradient of the batch's rows it holds; the first actor adds the KL term. y is [n], or
[n, P] for P outputs of a model with several latent GPs (docs/math.md section 11). A step sends x
[p] to each actor and gets back (ELBO share, d/dx [p], d/dvalues [p']): O(m^2 + p) numbers,
never rows. The client adds the shares in a fixed order and takes one Adam (or natural-gradient)
step with the C++ trainer: the steps are exact, as in one process.

A worker lost in the middle of a step costs time, not the result: the step's shares are
dropped, the actors are rebuilt on the workers left (Dask recomputes lost chunks) with their
samplers advanced to the same step, and the step is taken again. The trainer's state changes
only when every share has arrived.
"""

from __future__ import annotations

import asyncio
import time
import warnings

import numpy as np
from dask.core import flatten

from .._loader import core as _core
from ._partitioned import PartitionedRows, active_client, as_row_chunks, sample_rows

__all__ = ["Shards", "full_elbo"]

# Seconds a step may take before it counts as lost (a worker that hangs), and rebuilds per fit.
_STEP_TIMEOUT = 300.0
_MAX_REBUILDS = 3


class _Shard:
    """Actor: one worker's chunks (row ranges [start, stop) of X and y) and the model's layout;
    y's chunks checked by the model ([n_j] or [n_j, P])."""

    def __init__(self, model, seed: int, n: int, batch_size: int, steps_done: int, with_kl: bool, ranges,
                 *chunks):
        k = len(ranges)
        self.X = [np.ascontiguousarray(c, np.float64) for c in chunks[:k]]  # [n_j, d] each
        self.y = [model._targets(c, "y", x.shape[0]) for c, x in zip(chunks[k:], self.X)]  # [n_j] or [n_j, P]
        self.starts = np.array([r[0] for r in ranges], dtype=np.int64)
        self.stops = np.array([r[1] for r in ranges], dtype=np.int64)
        self.layout, _ = model._layout()
        self.scale = model.num_data / batch_size
        self.n, self.batch_size, self.with_kl = n, batch_size, with_kl
        self.sampler = _core.sparse.BatchSampler(seed)
        for _ in range(steps_done):
            self.sampler.next(n, batch_size)

    def step(self, x):
        """This worker's share of the next minibatch's ELBO: (elbo, d/dx, d/dvalues)."""
        rows = self.sampler.next(self.n, self.batch_size)  # [B] global row numbers
        Xb, yb = self._gather(rows)
        elbo, gx, gv, _ = _core.sparse.svgp_elbo_grad_x(self.layout, x, Xb, yb, scale=self.scale, kl=self.with_kl)
        return elbo, gx, gv

    def _gather(self, rows):
        """The rows held here, chunk by chunk: X [k, d], y [k] (or [k, P])."""
        owner = np.searchsorted(self.starts, rows, side="right") - 1
        here = (owner >= 0) & (rows < self.stops[np.maximum(owner, 0)])
        xs, ys = [], []
        for j in range(len(self.X)):
            local = rows[here & (owner == j)] - self.starts[j]
            xs.append(self.X[j][local])
            ys.append(self.y[j][local])
        return np.concatenate(xs), np.concatenate(ys)


def _cluster_client(client):
    """``client`` or the active distributed.Client: SVGP's actors need one."""
    client = active_client(client)
    if client is None:
        raise ValueError("SVGP on dask arrays trains on a Dask cluster: create a distributed.Client first "
                         "(distributed.Client(distributed.LocalCluster()) on one machine; pip install "
                         '"varinf[dask]"), or pass numpy arrays')
    return client


class Shards:
    """The actors over a fit's data, and the synchronous steps."""

    def __init__(self, model, X, y, d: int | None, client=None):
        self.client = _cluster_client(client)
        self.model = model
        self._source = as_row_chunks(X, y, d, columns=True)  # [n, d], [n] or [n, P]
        self.X, self.y = self.client.persist(list(self._source))
        self.n = self.X.shape[0]
        self.actors = []

    def sample(self, rows: int, seed) -> np.ndarray:
        return sample_rows(self.X, rows, seed)

    def start(self, seed: int, batch_size: int, steps_done: int = 0):
        """(Re)build one actor per worker that holds chunks, its sampler at step ``steps_done``."""
        self.seed, self.batch_size = seed, batch_size
        futures = self._chunks()
        xkeys, ykeys = list(flatten(self.X.__dask_keys__())), list(flatten(self.y.__dask_keys__()))
        who = self.client.who_has([futures[k] for k in xkeys])
        bounds = np.concatenate([[0], np.cumsum(self.X.chunks[0])]).astype(int)
        by_worker = {}
        for i, key in enumerate(xkeys):
            by_worker.setdefault(sorted(who[key])[0], []).append(i)
        model = self.client.scatter(self.model, broadcast=True, hash=False)  # the model holds no data
        self.actors = []
        for w, worker in enumerate(sorted(by_worker)):
            idx = by_worker[worker]
            ranges = [(int(bounds[i]), int(bounds[i + 1])) for i in idx]
            chunks = [futures[xkeys[i]] for i in idx] + [futures[ykeys[i]] for i in idx]
            self.actors.append(self.client.submit(
                _Shard, model, seed, self.n, batch_size, steps_done, w == 0, ranges, *chunks,
                workers=[worker], allow_other_workers=True, actor=True, pure=False))
        self.actors = [a.result() for a in self.actors]

    def _chunks(self) -> dict:
        """key -> future of every chunk of X and y, once all are in memory. Chunks that are not
        back within _STEP_TIMEOUT (a cluster that lost every copy and has not recomputed them)
        are persisted again from their source."""
        from distributed import futures_of, wait

        def chunks():
            return {f.key: f for f in futures_of(self.X) + futures_of(self.y)}

        try:
            wait(list(chunks().values()), timeout=_STEP_TIMEOUT)
        except asyncio.TimeoutError:
            self.X, self.y = self.client.persist(list(self._source))
            wait(list(chunks().values()), timeout=_STEP_TIMEOUT)
        return chunks()

    def _step(self, x) -> tuple:
        """The sum of the actors' shares, in actor order."""
        calls = [a.step(x) for a in self.actors]
        parts = [c.result(timeout=_STEP_TIMEOUT) for c in calls]
        elbo, gx, gv = parts[0]
        for e, a, b in parts[1:]:
            elbo, gx, gv = elbo + e, gx + a, gv + b
        return elbo, gx, gv

    def run(self, trainer, steps: int, steps_done: int) -> np.ndarray:
        """Up to ``steps`` synchronous steps of ``trainer`` (an SVGPTrainer); the ELBO of each."""
        elbos = []
        for s in range(steps):
            for attempt in range(_MAX_REBUILDS + 1):
                try:
                    if attempt:  # rebuilding can itself meet a lost worker: one more attempt
                        self.start(self.seed, self.batch_size, steps_done + s)
                    elbo, gx, gv = self._step(trainer.x)
                    break
                except Exception as exc:  # a worker lost or hung: rebuild at this step
                    if attempt == _MAX_REBUILDS:
                        raise RuntimeError(f"SVGP step {steps_done + s + 1} failed {attempt + 1} times on the Dask "
                                           f"cluster ({type(exc).__name__}: {exc}); the model keeps the "
                                           f"parameters of the last completed step") from exc
                    warnings.warn(f"a Dask worker was lost at SVGP step {steps_done + s + 1} "
                                  f"({type(exc).__name__}); rebuilding the shards and taking the step again",
                                  RuntimeWarning, stacklevel=2)
                    time.sleep(0.5)
            if not trainer.apply(elbo, gx, gv):
                break
            elbos.append(elbo)
        return np.asarray(elbos, dtype=np.float64)


def _chunk_elbo(shared, X, y):
    """One chunk's likelihood terms of the ELBO, scaled by num_data / n, and their gradient."""
    model, x, scale = shared
    y = model._targets(y, "y", X.shape[0])  # [k] or [k, P]
    elbo, gx, _, _ = _core.sparse.svgp_elbo_grad_x(model._layout()[0], x, np.ascontiguousarray(X), y,
                                                   scale=scale, kl=False)
    return elbo, gx


def full_elbo(model, X, y) -> tuple:
    """The ELBO of all the rows of dask arrays X and y, summed over their chunks where they lie,
    with the KL added once: (elbo, d/dx, jitter)."""
    model._require_inducing()
    X, y = as_row_chunks(X, y, model.input_dim, columns=True)
    layout, pv = model._layout()
    x = pv.get()
    elbo, gx = PartitionedRows(X, y).map_sum(_chunk_elbo, (model, x, model.num_data / X.shape[0]))
    # The KL term and the jitter that K(Z, Z) needs, here: no rows.
    kl_elbo, kl_gx, _, jitter = _core.sparse.svgp_elbo_grad_x(layout, x, np.zeros((0, X.shape[1])),
                                                             _no_targets(model), scale=0.0)
    return elbo + kl_elbo, gx + kl_gx, jitter


def _no_targets(model) -> np.ndarray:
    """An empty Y for the layout's likelihood: [0] for one target column, [0, c] for c
    (docs/math.md section 11.2)."""
    c = model.likelihood.latent_core(model.num_outputs).num_targets
    return np.zeros(0) if c == 1 else np.zeros((0, c))
