"""Plots of fitted models (matplotlib is optional: ``pip install "varinf[plot]"``).

- ``plot_predictive(model)``: a 1-D GP's predictive mean with +-2 sd bands, data, inducing inputs;
- ``plot_training_curve(history)``: an SVGP's ELBO per step or a VAE's ELBO per epoch;
- ``plot_reconstructions(vae, X)`` / ``plot_samples(vae)``: image grids of square images;
- ``plot_latent(vae, X, labels)``: the means of q(z | x) in two latent dimensions.

Every function draws into ``ax`` when given (a new figure otherwise) and returns the Axes;
``ax.figure.savefig(path)`` writes it. Without a display, matplotlib's Agg backend is used.

    import varinf as vi
    ax = vi.plot.plot_predictive(model)
    ax.figure.savefig("predictive.png")
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from .likelihoods import Gaussian
from .models import SVGP
from .models._regression import GaussianRegression

# Series longer than this get a running mean drawn over them.
_SMOOTH_ABOVE = 200

__all__ = ["plot_latent", "plot_predictive", "plot_reconstructions", "plot_samples", "plot_training_curve"]

_INSTALL_HINT = 'varinf.plot needs matplotlib: pip install "varinf[plot]" (or pip install matplotlib)'


def _pyplot():
    """matplotlib.pyplot, imported on first use; the Agg backend when there is no display."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _axes(ax, figsize=(7.0, 4.0)):
    if ax is not None:
        return ax
    return _pyplot().subplots(figsize=figsize, layout="constrained")[1]


# --- 1-D predictions -----------------------------------------------------------------------------

def _check_gp(model):
    if not isinstance(model, (GaussianRegression, SVGP)):
        raise ValueError(f"model must be a varinf GPR, SGPR, FITC or SVGP, got {type(model).__name__}")


def _training_data(model):
    """(X [n, 1], y [n]) a regression model keeps, or (None, None) (an SVGP keeps none)."""
    return getattr(model, "X", None), getattr(model, "y", None)


def _gaussian_noise(model) -> bool:
    """Whether predict_y is f plus Gaussian noise (GPR, SGPR, FITC, SVGP + Gaussian likelihood)."""
    likelihood = getattr(model, "likelihood", None)
    return likelihood is None or isinstance(likelihood, Gaussian)


def _as_1d_inputs(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim == 2 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim != 1:
        raise ValueError(f"{name} must hold 1-D inputs ([n] or [n, 1]) for plot_predictive, got shape {X.shape}")
    return X


def plot_predictive(model, X=None, y=None, ax=None, xlim=None, num_points: int = 400,
                    x_offset: float = 0.0, y_offset: float = 0.0, y_scale: float = 1.0, label: str = ""):
    """The predictive distribution of a GP of one input (GPR, SGPR, FITC or SVGP).

    Draws the predictive mean, +-2 sd bands of the latent f and (for Gaussian noise) of noisy
    y, the data (X, y) as points (default: the model's training data, which an SVGP does not
    keep) and the inducing inputs as ticks along the bottom. For a non-Gaussian SVGP the line
    is E[y*] (a probability for Bernoulli) and the band is omitted.

    xlim: the (low, high) range of the prediction grid in model inputs (default: the data's
    range, or the inducing inputs'); num_points: grid size. Axis units: shown inputs are
    ``x_offset + x`` and outputs ``y_offset + y_scale * y`` (to undo a standardisation).
    Returns the Axes.
    """
    _check_gp(model)
    if model.input_dim != 1:
        raise ValueError(f"model must have 1-D inputs for plot_predictive, got {model.input_dim} input dimensions")
    X_data, y_data = _training_data(model)
    if X is not None:
        X_data, y_data = _as_1d_inputs(X, "X"), None
        if y is not None:
            y_data = np.asarray(y, dtype=float).ravel()
            if y_data.shape != X_data.shape:
                raise ValueError(f"y must have one value per row of X ({X_data.size}), got shape {np.shape(y)}")
    elif y is not None:
        raise ValueError("y was given without X")
    elif X_data is not None:
        X_data = X_data[:, 0]
    Z = getattr(model, "Z", None)
    Z = None if Z is None else Z[:, 0]
    if xlim is None:
        reference = X_data if X_data is not None else Z
        xlim = (reference.min(), reference.max())
    grid = np.linspace(float(xlim[0]), float(xlim[1]), int(num_points))  # [g]
    ax = _axes(ax)
    show_x = x_offset + grid
    prefix = f"{label} " if label else ""

    def shown(v):
        return y_offset + y_scale * v

    if _gaussian_noise(model):
        mean, var_f = model.predict_f(grid[:, None])
        _, var_y = model.predict_y(grid[:, None])
        for var, name, alpha in ((var_y, "y", 0.15), (var_f, "f", 0.3)):
            sd = 2.0 * np.sqrt(var) * abs(y_scale)
            ax.fill_between(show_x, shown(mean) - sd, shown(mean) + sd, alpha=alpha, color="C0",
                            linewidth=0, label=f"{prefix}{name} ± 2 sd")
    else:
        mean, _ = model.predict_y(grid[:, None])
    ax.plot(show_x, shown(mean), color="C0", linewidth=1.5, label=f"{prefix}predictive mean")
    if X_data is not None and y_data is not None:
        ax.plot(x_offset + X_data, shown(y_data), ".", color="k", markersize=3, label="data")
    if Z is not None:
        ax.plot(x_offset + Z, np.zeros_like(Z), "|", color="C3", markersize=10, markeredgewidth=1.5,
                transform=ax.get_xaxis_transform(), label=f"inducing inputs (m={Z.size})", clip_on=False)
    ax.set_xlim(show_x[0], show_x[-1])
    ax.legend(loc="best", fontsize="small")
    return ax


# --- training curves -------------------------------------------------------------------------------

def _curves(history):
    """(series {label: values}, x label) from an SVGP, a VAE, a dict of lists or an array."""
    if hasattr(history, "elbo_history_"):  # SVGP: the minibatch ELBO per step
        return {"minibatch ELBO / n": np.asarray(history.elbo_history_) / history.num_data}, "step"
    if hasattr(history, "history_"):  # VAE: loss (-ELBO) and validation ELBO per epoch
        h = history.history_
        series = {"training ELBO (-loss)": -np.asarray(h["loss"], dtype=float)}
        if any(v is not None for v in h.get("val_elbo", [])):
            series["validation ELBO"] = np.array([np.nan if v is None else v for v in h["val_elbo"]], dtype=float)
        return series, "epoch"
    if isinstance(history, dict):
        return {str(k): np.array([np.nan if v is None else v for v in vals], dtype=float)
                for k, vals in history.items()}, "epoch"
    try:
        values = np.asarray(history, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"history must be a model, a dict of lists or a 1-D array of numbers, "
                         f"got {type(history).__name__}") from None
    if values.ndim != 1:
        raise ValueError(f"history must be a model, a dict of lists or a 1-D array, got shape {values.shape}")
    return {"objective": values}, "step"


def plot_training_curve(history, ax=None, log_x: bool = False):
    """The objective during training: ``history`` is an SVGP (``elbo_history_``), a VAE
    (``history_``: training and validation ELBO per epoch), a dict {name: values} or a 1-D
    array. Returns the Axes."""
    series, xlabel = _curves(history)
    if not any(np.isfinite(v).any() for v in series.values()):
        raise ValueError("history is empty: fit the model first")
    ax = _axes(ax)
    shown = []
    for i, (name, values) in enumerate(series.items()):
        steps = np.arange(1, values.size + 1)
        if values.size < _SMOOTH_ABOVE:
            ax.plot(steps, values, linewidth=1.0, color=f"C{i}", label=name)
            shown.append(values)
            continue
        # Minibatch objectives are noisy: the raw values faintly, a running mean over 1% of them on top.
        window = values.size // 100
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")  # [size - window + 1]
        ax.plot(steps, values, linewidth=0.5, color=f"C{i}", alpha=0.25)
        ax.plot(steps[window - 1:], smooth, linewidth=1.5, color=f"C{i}", label=f"{name}, running mean of {window}")
        shown.append(smooth)
    # When the first steps sit orders of magnitude below the rest, start the axis at the 5th percentile.
    finite = np.concatenate([v[np.isfinite(v)] for v in shown])
    low, high = np.percentile(finite, 5), finite.max()
    if high - finite.min() > 10 * (high - low):
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nats per datum")
    ax.legend(loc="best", fontsize="small")
    return ax


# --- VAE images --------------------------------------------------------------------------------------

def _image_shape(width: int, image_shape, name: str) -> tuple:
    """(h, w) of images stored as rows of ``width`` pixels: square unless given."""
    if image_shape is not None:
        h, w = (int(s) for s in image_shape)
        if h * w != width:
            raise ValueError(f"image_shape {tuple(image_shape)} does not hold the {width} values per row of {name}")
        return h, w
    side = math.isqrt(width)
    if side * side != width:
        raise ValueError(f"{name} has {width} values per row, not a square image; pass image_shape=(h, w)")
    return side, side


def _mosaic(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Images [k, h, w] tiled row by row into one array, ``pad`` pixels of NaN between them."""
    k, h, w = images.shape
    nrows = math.ceil(k / ncols)
    out = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = image
    return out


def _show_grid(ax, mosaic, title):
    ax = _axes(ax, figsize=(6.0, 6.0 * mosaic.shape[0] / mosaic.shape[1] + 0.4))
    ax.imshow(mosaic, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return ax


def _check_vae(vae, name="vae"):
    if not (hasattr(vae, "decode") and hasattr(vae, "encode") and hasattr(vae, "latent_dim")):
        raise ValueError(f"{name} must be a varinf.VAE, got {type(vae).__name__}")


def plot_reconstructions(vae, X, n: int = 16, ncols: int = 8, image_shape=None, ax=None):
    """The first ``n`` rows of X (odd grid rows) above their reconstructions decode(E[z | x])
    (even grid rows), ``ncols`` per row. Rows of X are square images unless ``image_shape``
    is given. Returns the Axes (one image)."""
    _check_vae(vae)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D [n, pixels], got shape {X.shape}")
    h, w = _image_shape(X.shape[1], image_shape, "X")
    n = min(int(n), X.shape[0])
    if n < 1 or ncols < 1:
        raise ValueError(f"n and ncols must be >= 1, got n={n}, ncols={ncols}")
    originals = X[:n].astype(float)
    recon = np.asarray(vae.reconstruct(X[:n]), dtype=float)
    pairs = []
    for start in range(0, n, ncols):  # a row of originals, then their reconstructions
        block = slice(start, min(start + ncols, n))
        for rows in (originals[block], recon[block]):
            padded = np.full((ncols, h * w), np.nan)
            padded[:rows.shape[0]] = rows
            pairs.append(padded)
    images = np.concatenate(pairs).reshape(-1, h, w)
    return _show_grid(ax, _mosaic(images, ncols), "data (odd rows) and reconstructions (even rows)")


def plot_samples(vae, n: int = 64, ncols: int = 8, seed=0, mean: bool = True, image_shape=None, ax=None):
    """``n`` draws from the VAE (decoder means of z ~ N(0, I); binary draws with
    ``mean=False``) as a grid of ``ncols`` columns. Returns the Axes (one image)."""
    _check_vae(vae)
    h, w = _image_shape(vae.input_dim, image_shape, "the VAE's outputs (input_dim)")
    if int(n) < 1 or ncols < 1:
        raise ValueError(f"n and ncols must be >= 1, got n={n}, ncols={ncols}")
    samples = np.asarray(vae.sample(int(n), seed=seed, mean=mean), dtype=float).reshape(-1, h, w)
    return _show_grid(ax, _mosaic(samples, min(ncols, int(n))), "samples from the VAE")


def plot_latent(vae, X, labels=None, ax=None, dims=(0, 1)):
    """The means of q(z | x) for the rows of X in latent dimensions ``dims``, coloured by
    ``labels`` (one per row) when given. Returns the Axes."""
    _check_vae(vae)
    if vae.latent_dim < 2:
        raise ValueError(f"vae must have at least 2 latent dimensions for plot_latent, got {vae.latent_dim}")
    i, j = (int(d) for d in dims)
    if not (0 <= i < vae.latent_dim and 0 <= j < vae.latent_dim and i != j):
        raise ValueError(f"dims must be two distinct latent dimensions below {vae.latent_dim}, got {dims}")
    mu, _ = vae.encode(X)  # [n, J]
    ax = _axes(ax, figsize=(6.0, 5.0))
    if labels is None:
        ax.scatter(mu[:, i], mu[:, j], s=6, alpha=0.7)
    else:
        labels = np.asarray(labels).ravel()
        if labels.shape[0] != mu.shape[0]:
            raise ValueError(f"labels must have one entry per row of X ({mu.shape[0]}), got {labels.shape[0]}")
        classes, codes = np.unique(labels, return_inverse=True)
        points = ax.scatter(mu[:, i], mu[:, j], c=codes, s=6, alpha=0.7, cmap="tab10" if classes.size <= 10 else "viridis")
        if classes.size <= 10:
            handles, _ = points.legend_elements(num=None)
            ax.legend(handles, [str(v) for v in classes], loc="best", fontsize="small")
    ax.set_xlabel(f"z{i + 1} (mean of q(z | x))")
    ax.set_ylabel(f"z{j + 1}")
    return ax
