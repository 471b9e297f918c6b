"""Lazy predictions on dask arrays: one task per block of rows (``map_blocks``), with the model
a single key of the graph, so each worker receives it once, not once per block."""

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np

from ._partitioned import _as_dask_array

__all__ = ["lazy"]




def lazy(predictor, method: str, Xnew, columns: tuple, kwargs: dict, outputs: int):
    """``predictor.method(Xnew, *columns, **kwargs)`` as lazy dask arrays: a tuple of ``outputs``
    arrays (or one array when outputs == 1), [n*] each, or [n*, w] for a model with several
    latent GPs (docs/math.md section 11). ``columns`` (ynew [n*] or [n*, P]) are rechunked to
    Xnew's rows."""
    if kwargs.get("full_cov"):
        raise ValueError("full_cov=True needs Xnew in memory (an [n*, n*] matrix); pass a numpy array")
    Xnew = _as_dask_array(Xnew, "Xnew")
    if Xnew.ndim == 1:
        Xnew = Xnew[:, None]
    if Xnew.ndim != 2:
        raise ValueError(f"Xnew must be 2-D [n*, d], got shape {Xnew.shape}")
    Xnew = Xnew.rechunk({1: -1})
    cols, flat = [], []
    for c in columns:
        c = _as_dask_array(c, "ynew")
        c = c[:, 0] if c.ndim == 2 and c.shape[1] == 1 else c
        if c.ndim not in (1, 2) or c.shape[0] != Xnew.shape[0]:
            raise ValueError(f"ynew must be [n*] or [n*, P] with the {Xnew.shape[0]} rows of Xnew, got shape "
                             f"{c.shape}")
        flat.append(c.ndim == 1)
        c = c[:, None] if c.ndim == 1 else c
        cols.append(c.rechunk((Xnew.chunks[0], -1)))  # [n*, 1] or [n*, P], aligned with Xnew's blocks
    shapes = _row_shapes(predictor, method, kwargs, outputs)  # one row of each result
    widths = [math.prod(s) for s in shapes]
    model = dask.delayed(predictor, traverse=False)  # one key: sent to each worker once
    out = da.map_blocks(_column_block, model, Xnew, *cols, method=method, kwargs=kwargs, flat=tuple(flat),
                        dtype=np.float64, chunks=(Xnew.chunks[0], (sum(widths),)), meta=np.empty((0, sum(widths))))
    ends = np.cumsum(widths)
    results = tuple(_unflatten(out[:, end - w:end], s) for end, w, s in zip(ends, widths, shapes))
    return results[0] if outputs == 1 else results


def _row_shapes(predictor, method: str, kwargs: dict, outputs: int) -> list:
    """The shape of one row of each result: () for one latent GP and for log densities (summed
    over a row's outputs); with several latent GPs (docs/math.md section 11.1) (w,) for predict_f
    (w = L, or P with coregionalisation; full_output_cov's covariance (P, P)) and for predict_y
    (w = the likelihood's predictive columns: P outputs, K class probabilities)."""
    if method == "predict_log_density" or getattr(predictor, "_single", True):
        return [()] * outputs
    w = predictor.num_outputs
    if method == "predict_y":
        return [(predictor.likelihood.latent_core(w).num_predictive,)] * outputs
    return [(w,), (w, w)] if kwargs.get("full_output_cov") else [(w,)] * outputs


def _unflatten(block, shape: tuple):
    """Columns [n*, prod(shape)] of the stacked results as [n*, *shape]."""
    if shape == ():
        return block[:, 0]
    return block if len(shape) == 1 else block.reshape((block.shape[0],) + shape)


def _column_block(model, X, *columns, method, kwargs, flat):
    """The model's numpy method on one block of rows X [k, d] (and ynew [k, 1] or [k, P], passed
    as [k] where ``flat``): its results, each flattened to [k, w], as the columns of one array."""
    ys = (c[:, 0] if f else c for c, f in zip(columns, flat))
    out = getattr(model, method)(X, *ys, **kwargs)
    out = out if isinstance(out, tuple) else (out,)
    return np.concatenate([o.reshape(o.shape[0], -1) for o in out], axis=1)
