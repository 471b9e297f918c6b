"""Lazy predictions on dask arrays: one task per block of rows (``map_blocks``), with the model
a single key of the graph, so each worker receives it once, not once per block."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from ._partitioned import _as_dask_array
from ._worker import prepare

__all__ = ["lazy"]




def lazy(predictor, method: str, Xnew, columns: tuple, kwargs: dict, outputs: int):
    """``predictor.method(Xnew, *columns, **kwargs)`` as lazy dask arrays: a tuple of ``outputs``
    arrays [n*] (or one array when outputs == 1). ``columns`` (ynew) are rechunked to Xnew's rows."""
    if kwargs.get("full_cov"):
        raise ValueError("full_cov=True needs Xnew in memory (an [n*, n*] matrix); pass a numpy array")
    Xnew = _as_dask_array(Xnew, "Xnew")
    if Xnew.ndim == 1:
        Xnew = Xnew[:, None]
    if Xnew.ndim != 2:
        raise ValueError(f"Xnew must be 2-D [n*, d], got shape {Xnew.shape}")
    Xnew = Xnew.rechunk({1: -1})
    cols = []
    for c in columns:
        c = _as_dask_array(c, "ynew")
        c = c[:, 0] if c.ndim == 2 and c.shape[1] == 1 else c
        if c.ndim != 1 or c.shape[0] != Xnew.shape[0]:
            raise ValueError(f"ynew must be 1-D with the {Xnew.shape[0]} rows of Xnew, got shape {c.shape}")
        cols.append(c.rechunk((Xnew.chunks[0],))[:, None])  # [n*, 1], aligned with Xnew's blocks
    model = dask.delayed(predictor, traverse=False)  # one key: sent to each worker once
    out = da.map_blocks(_column_block, model, Xnew, *cols, method=method, kwargs=kwargs, dtype=np.float64,
                        chunks=(Xnew.chunks[0], (outputs,)), meta=np.empty((0, outputs)))
    if outputs == 1:
        return out[:, 0]
    return tuple(out[:, j] for j in range(outputs))


def _column_block(model, X, *columns, method, kwargs):
    """The model's numpy method on one block of rows X [k, d] (and ynew [k, 1]): its results as
    the columns of one array [k, outputs]."""
    prepare()
    out = getattr(model, method)(X, *(c[:, 0] for c in columns), **kwargs)
    return np.stack(out, axis=1) if isinstance(out, tuple) else out[:, None]
