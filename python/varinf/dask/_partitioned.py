"""Training data held as dask arrays, chunked by rows: the checks where they enter, the sum of
per-chunk results in a fixed tree order, and the two passes of SGPR and FITC over the chunks
(docs/math.md section 10; Gal, van der Wilk & Rasmussen 2014).

Each pass sends the chunks the parameters (one task-graph key, so each worker receives them
once per pass) and gets back O(m^2 + m d + p) numbers per chunk; the rows never move. The
computations use the active ``distributed.Client`` when there is one and dask's default
scheduler otherwise (out-of-core on one machine)."""

from __future__ import annotations

import functools
import math
import sys

import dask
import dask.array as da
import numpy as np

from .._loader import core as _core

__all__ = ["PartitionedRows", "active_client", "as_row_chunks", "sample_rows", "tree_sum", "compute"]


_GONE = "the Dask client or cluster that holds the data is gone"


def compute(*collections, data=()):
    """dask.compute, with a clear error when the client that holds persisted data (in
    ``collections`` or ``data``, the arrays they were cut from) has closed: dask would fall back
    to its local scheduler and miss the data."""
    if "distributed" in sys.modules:
        from distributed import futures_of
        if any(f.client.status in ("closing", "closed") for f in futures_of((collections, data))):
            raise RuntimeError(f"{_GONE} (its client is closed); start a client and create the model again")
    try:
        return dask.compute(*collections)
    except Exception as exc:
        if type(exc).__name__ in ("CancelledError", "FutureCancelledError"):
            raise RuntimeError(f"{_GONE} ({type(exc).__name__}: {exc}); start a client and create the model "
                               "again") from exc
        raise


def active_client(client=None):
    """``client``, or the active distributed.Client, or None (no client: dask's default
    scheduler); ValueError for a closed client."""
    if client is None:
        try:
            from distributed import default_client
            client = default_client()
        except (ImportError, ValueError):
            return None
    if client.status in ("closing", "closed"):
        raise ValueError("client is closed; create a new distributed.Client")
    return client


def _as_dask_array(a, name: str):
    """a dask array of ``a`` (a dask DataFrame or Series through ``to_dask_array``)."""
    if hasattr(a, "to_dask_array"):
        a = a.to_dask_array(lengths=True)
    if not isinstance(a, da.Array):
        a = da.from_array(np.asarray(a))
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name} must be an array of rows, got a scalar")
    if any(math.isnan(c) for c in a.chunks[0]):
        raise ValueError(f"{name} has unknown chunk sizes (NaN): call {name}.compute_chunk_sizes() first "
                         f"(or to_dask_array(lengths=True) on a dask DataFrame)")
    return a.astype(np.float64)


def _finite(block) -> bool:
    return bool(np.all(np.isfinite(block)))


def as_row_chunks(X, y, d: int | None = None, columns: bool = False):
    """X [n, d] and y [n] as float64 dask arrays chunked by rows: X in one chunk across its
    columns (rechunked when it is not), y rechunked to X's rows. With ``columns`` y may also be
    [n, c] (several outputs, docs/math.md section 11), its columns in one chunk. Raises
    ValueError naming the argument for unknown chunk sizes, wrong shapes, and NaN or Inf (with
    the chunk's rows)."""
    X = _as_dask_array(X, "X")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-D array [n, d], got shape {X.shape}")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"X must have {d} columns, got {X.shape[1]}")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    y = _as_dask_array(y, "y")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in ((1, 2) if columns else (1,)) or y.shape[0] != X.shape[0]:
        want = "[n] or [n, c]" if columns else "1-D"
        raise ValueError(f"y must be {want} with the {X.shape[0]} rows of X, got shape {y.shape}")
    if y.chunks[0] != X.chunks[0] or len(y.chunks) == 2 and len(y.chunks[1]) > 1:
        y = y.rechunk((X.chunks[0],) + y.shape[1:])  # [n] or [n, c], c in one chunk
    _check_finite(X, y)
    return X, y


def _check_finite(X, y):
    """ValueError naming X or y and the rows of the first chunk with NaN or Inf (one pass)."""
    xs, ys = X.to_delayed().ravel(), y.to_delayed().ravel()
    flags = compute(*[dask.delayed(_finite, pure=True)(c) for c in list(xs) + list(ys)], data=(X, y))
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
    for name, ok in (("X", flags[:len(xs)]), ("y", flags[len(xs):])):
        for i, good in enumerate(ok):
            if not good:
                raise ValueError(f"{name} contains NaN or Inf in rows [{starts[i]}, {starts[i + 1]}) "
                                 f"(chunk {i})")


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def tree_sum(parts: list):
    """The sum of delayed tuples (field by field) by a balanced binary tree in the parts' order:
    the same rounding for the same chunking, whichever worker finishes first (docs/math.md
    section 10.4)."""
    while len(parts) > 1:
        parts = [dask.delayed(_add, pure=True)(*parts[i:i + 2]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


def _sparse_on_chunk(name: str, shared, X, y):
    """The C++ function ``name`` of varinf's sparse module on one chunk's rows."""
    kernel, theta, Z, noise, mean, jitter, *extra = shared
    fn = getattr(_core.sparse, name)
    return fn(kernel.core(), theta, np.ascontiguousarray(X), np.ascontiguousarray(y), Z, noise, mean, jitter,
              *extra)


class PartitionedRows:
    """A model's training rows, X [n, d] and y [n], as dask arrays chunked by rows."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        self._chunks = list(zip(X.to_delayed().ravel(), y.to_delayed().ravel()))

    def sum(self, name: str, shared: tuple) -> tuple:
        """The sum over the chunks of the C++ function ``name`` at the parameters ``shared``
        (kernel, theta, Z, noise, mean, jitter, extra arguments...)."""
        return self.map_sum(functools.partial(_sparse_on_chunk, name), shared)

    def map_sum(self, function, shared) -> tuple:
        """The sum over the chunks of ``function(shared, X, y)`` (a tuple of arrays and numbers);
        ``shared`` is one key of the graph, sent to each worker once."""
        params = dask.delayed(shared, traverse=False)
        parts = [dask.delayed(function, pure=True)(params, X, y) for X, y in self._chunks]
        return compute(tree_sum(parts), data=(self.X, self.y))[0]

    def sample(self, rows: int, seed) -> np.ndarray:
        return sample_rows(self.X, rows, seed)


def sample_rows(X, rows: int, seed) -> np.ndarray:
    """Up to ``rows`` rows of the dask array X drawn uniformly without replacement [rows, d]
    (the points k-means places the first inducing inputs among)."""
    n = X.shape[0]
    if n <= rows:
        return np.asarray(compute(X)[0])
    idx = np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    return np.asarray(compute(X[idx])[0])


def _split(shared):
    kernel, theta, Z, noise, mean, jitter = shared
    return kernel.core(), theta, Z, noise, mean, jitter


class SGPRPasses:
    """Titsias's bound over chunks: statistics, the bound and adjoints on the client, the data
    side of the gradient (sgpr.hpp)."""

    @staticmethod
    def factor(rows: PartitionedRows, shared: tuple):
        return _core.sparse.sgpr_factor_from_stats(*_split(shared), rows.sum("sgpr_stats", shared))

    @staticmethod
    def bound_grad(rows: PartitionedRows, shared: tuple) -> tuple:
        stats = rows.sum("sgpr_stats", shared)
        (bound, dtheta, dZ, dnoise, dmean, jitter), adjoints = _core.sparse.sgpr_collapsed_grad(*_split(shared), stats)
        data_dtheta, data_dZ = rows.sum("sgpr_data_grad", shared + (adjoints,))
        return bound, dtheta + data_dtheta, dZ + data_dZ, dnoise, dmean, jitter


class FITCPasses:
    """FITC over chunks: L = chol(Kuu) first (lambda_i needs it on the workers), statistics,
    the factor on the client, the reverse pass, the gradient on the client (sgpr.hpp)."""

    @staticmethod
    def factor(rows: PartitionedRows, shared: tuple):
        kernel, theta, Z, noise, mean, jitter = _split(shared)
        L, used = _core.sparse.inducing_factor(kernel, theta, Z, jitter)
        stats = rows.sum("fitc_stats", shared + (L,))
        return _core.sparse.fitc_factor_from_stats(kernel, theta, Z, noise, mean, jitter, L, used, stats)

    @classmethod
    def bound_grad(cls, rows: PartitionedRows, shared: tuple) -> tuple:
        factor = cls.factor(rows, shared)
        sums = rows.sum("fitc_data_grad", shared + (factor,))
        return _core.sparse.fitc_finish_grad(*_split(shared), factor, sums)


PASSES = {"sgpr": SGPRPasses, "fitc": FITCPasses}
