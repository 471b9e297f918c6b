"""Saving and loading varinf objects: ``vi.save(obj, path)``, ``model.save(path)``, ``vi.load(path)``.

The format
----------
A file is a zip archive written by ``numpy.savez`` (uncompressed; ``savez_compressed`` files
load too). It holds only numeric arrays and one string, so it is read with
``numpy.load(path, allow_pickle=False)``: loading a file never executes code.

``__varinf__``
    a 0-d unicode array holding JSON::

        {"format": "varinf", "format_version": 1, "varinf_version": "0.1.0",
         "class": "GPR", "config": {...}}

    ``class`` names the saved object (a whitelisted varinf class; names are never resolved
    to arbitrary Python objects) and ``config`` holds its non-array settings.
every other entry
    a named numeric array (float64 for GP models, kernels and likelihoods; the VAE's own
    dtype for its weights), e.g. ``X``, ``y``, ``Z``, ``noise_variance``, ``mean``, ``q_mu``,
    ``q_sqrt``, ``kernel/lengthscales``. Components nest under a prefix: the kernel of a
    model under ``kernel/``, the children of a Sum or Product under ``kernel/0/``,
    ``kernel/1/``, ..., an SVGP's likelihood under ``likelihood/``, VAE weights under
    ``weights/`` with PyTorch-style names (``weights/encoder.0.weight``).

Model configs hold the nested kernel (and likelihood) spec, ``has_mean``, the model
parameters' ``trainable`` flags and settings such as ``train_Z``, ``whiten``, ``q_diag``,
``num_data`` (SVGP; ``num_inducing`` when Z was given as a number and fit has not run yet)
or the VAE's constructor arguments plus ``fits`` (the number of fit calls, which seeds the next
one). A kernel's config is ``{"active_dims": [...] or null, "trainable": {"variance": true, ...}}``
(its parameter values are the arrays); a Sum's or Product's is ``{"children": [{"class":
..., "config": ...}, ...]}``. Likelihood configs add ``quadrature_points`` and (StudentT)
``df``. Parameter values are stored exactly, so a loaded model's predictions are
bit-identical to the saved model's. Fit results (``optimizer_result_``) are not stored;
``elbo_history_`` (SVGP) and ``history_`` (VAE) are.

Validation on load: the archive must be a readable zip with ``__varinf__``; the JSON must
parse and name format "varinf" and a known class; every array the class needs must be
present with its dtype and a shape consistent with the config and the other arrays, and be
finite (except the training histories under ``history/`` and ``elbo_history``, where NaN
marks a missing value); no unexpected array may be present. Any failure raises
``varinf.FormatError`` (a ValueError) naming the file and the problem.

Version policy: ``format_version`` increases when the layout changes incompatibly. This
varinf reads every version up to ``FORMAT_VERSION`` and refuses a newer one with an error
asking to upgrade varinf.

Plugging in new classes
-----------------------
A class becomes saveable by providing two methods and the ``register`` decorator::

    from varinf.serialization import register, dump_component, load_component

    @register
    class GPRegressor:
        def _save_state(self):
            # config: JSON-able dict; arrays: {name: numpy array} (names without "/"
            # at the start; "/" separates nested components)
            spec, arrays = dump_component(self.model_, "model/")   # nest a varinf model
            return {"alpha": self.alpha, "model": spec}, arrays

        @classmethod
        def _from_state(cls, config, arrays):
            # arrays: mapping name -> array; arrays.take(name, shape, dtype) also checks
            # dtype and shape (None in a shape matches any length). Every array must be read
            # (extra arrays are an error). Raise ValueError for anything invalid.
            est = cls(alpha=config["alpha"])
            est.model_ = load_component(config["model"], arrays, "model/")
            return est

Registration is by class name (``type(obj).__name__`` is what ``save`` looks up).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

import numpy as np

from . import kernels as _kernels
from . import likelihoods as _likelihoods
from .models import FITC, GPR, SGPR, SVGP, VAE

__all__ = ["FORMAT_VERSION", "FormatError", "dump_component", "load", "load_component", "register", "save"]

FORMAT_VERSION = 1
_META = "__varinf__"


class FormatError(ValueError):
    """A file is not a valid varinf file (corrupt, truncated, foreign or from a newer varinf)."""


# --- the registry ----------------------------------------------------------------------------------
_REGISTRY: dict = {}  # class name -> (class, dump(obj) -> (config, arrays), restore(config, arrays) -> obj)


def _register(cls, dump, restore):
    name = cls.__name__
    if name in _REGISTRY and _REGISTRY[name][0] is not cls:
        raise ValueError(f"another class named {name!r} is already registered for saving")
    _REGISTRY[name] = (cls, dump, restore)
    return cls


def register(cls):
    """Class decorator: make ``cls`` saveable through its ``_save_state`` / ``_from_state``."""
    for method in ("_save_state", "_from_state"):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"{cls.__name__} must define {method} to be registered")
    return _register(cls, lambda obj: obj._save_state(), cls._from_state)


def _handler(obj):
    entry = _REGISTRY.get(type(obj).__name__)
    if entry is None or entry[0] is not type(obj):
        raise ValueError(f"cannot save a {type(obj).__name__}: not a saveable varinf class "
                         f"({', '.join(sorted(_REGISTRY))})")
    return entry


# --- arrays on load -----------------------------------------------------------------------------------
class ArrayView:
    """The arrays of a component (names relative to ``prefix``); records which are read."""

    def __init__(self, arrays: dict, prefix: str = "", used: set | None = None):
        self._arrays, self._prefix = arrays, prefix
        self._used = set() if used is None else used

    def __contains__(self, name):
        return self._prefix + name in self._arrays

    def __getitem__(self, name):
        full = self._prefix + name
        if full not in self._arrays:
            raise FormatError(f"missing array {full!r}")
        self._used.add(full)
        return self._arrays[full]

    def take(self, name, shape=None, dtype=np.float64) -> np.ndarray:
        """The array ``name``, checked: exact dtype, and shape (None entries match any length)."""
        a = self[name]
        full = self._prefix + name
        if a.dtype != np.dtype(dtype):
            raise FormatError(f"array {full!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and (a.ndim != len(shape)
                                  or any(s is not None and s != t for s, t in zip(shape, a.shape))):
            want = tuple("any" if s is None else s for s in shape)
            raise FormatError(f"array {full!r} has shape {a.shape}, expected {want}")
        return a

    def sub(self, prefix: str) -> ArrayView:
        return ArrayView(self._arrays, self._prefix + prefix, self._used)

    def unused(self) -> list:
        return sorted(set(self._arrays) - self._used)


def _is_history(name: str) -> bool:
    # a training history at the top level or nested in a component ("model/history/loss")
    return "/history/" in "/" + name or name.endswith("elbo_history")


def _check_values(arrays: dict) -> None:
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise FormatError(f"array {name!r} has non-numeric dtype {a.dtype}")
        if a.dtype.kind == "f" and not _is_history(name) and not np.all(np.isfinite(a)):
            raise FormatError(f"array {name!r} contains NaN or Inf")


def _config(config, key, kind):
    """config[key], checked to be of ``kind`` (bool is not an int here)."""
    if not isinstance(config, dict) or key not in config:
        raise FormatError(f"config is missing {key!r}")
    value = config[key]
    ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
    if not ok:
        raise FormatError(f"config {key!r} has the wrong type: {value!r}")
    return value


# --- components --------------------------------------------------------------------------------------
def dump_component(obj, prefix: str):
    """({"class", "config"}, arrays with names under ``prefix``) of a saveable object."""
    _, dump, _ = _handler(obj)
    config, arrays = dump(obj)
    return {"class": type(obj).__name__, "config": config}, {prefix + k: np.asarray(v) for k, v in arrays.items()}


def load_component(spec, arrays, prefix: str, allowed=None):
    """The object ``dump_component`` described (``arrays`` as given to ``_from_state``)."""
    name = _config(spec, "class", str)
    entry = _REGISTRY.get(name)
    if entry is None or (allowed is not None and not issubclass(entry[0], allowed)):
        raise FormatError(f"unknown class {name!r}" + (f" (expected a {allowed.__name__})" if allowed else ""))
    view = arrays.sub(prefix) if isinstance(arrays, ArrayView) else ArrayView(arrays, prefix)
    return entry[2](_config(spec, "config", dict), view)


# --- parameters ----------------------------------------------------------------------------------------
def _dump_params(params) -> tuple:
    """({name: trainable}, {name: value}) of Parameter objects with distinct names."""
    return {p.name: p.trainable for p in params}, {p.name: p.value for p in params}


def _restore_trainable(params, trainable) -> None:
    if not isinstance(trainable, dict) or set(trainable) != {p.name for p in params}:
        raise FormatError(f"trainable flags {trainable!r} do not match the parameters "
                          f"{[p.name for p in params]}")
    for p in params:
        p.trainable = _config(trainable, p.name, bool)


def _param_arrays(view: ArrayView, names) -> dict:
    """Float64 scalar or 1-D arrays for the named parameters."""
    out = {}
    for name in names:
        a = view.take(name)
        if a.ndim > 1:
            raise FormatError(f"parameter array {name!r} must be a scalar or 1-D, got shape {a.shape}")
        out[name] = a
    return out


# --- kernels -------------------------------------------------------------------------------------------
_KERNEL_PARAMS = {  # the constructor's parameter arguments (also the Parameter names)
    _kernels.SquaredExponential: ("variance", "lengthscales"), _kernels.Matern12: ("variance", "lengthscales"),
    _kernels.Matern32: ("variance", "lengthscales"), _kernels.Matern52: ("variance", "lengthscales"),
    _kernels.RationalQuadratic: ("variance", "lengthscales", "alpha"),
    _kernels.Periodic: ("variance", "lengthscales", "period"), _kernels.Linear: ("variance",),
    _kernels.Constant: ("variance",), _kernels.White: ("variance",),
}


def _dump_kernel(k):
    trainable, arrays = _dump_params(k.parameters)
    return {"active_dims": k.active_dims, "trainable": trainable}, arrays


def _restore_kernel(cls):
    def restore(config, view):
        active = config.get("active_dims")
        if active is not None and not (isinstance(active, list) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in active)):
            raise FormatError(f"active_dims must be a list of integers, got {active!r}")
        k = cls(**_param_arrays(view, _KERNEL_PARAMS[cls]), active_dims=active)
        _restore_trainable(k.parameters, _config(config, "trainable", dict))
        return k
    return restore


def _dump_combination(k):
    arrays, children = {}, []
    for i, child in enumerate(k.kernels):
        spec, child_arrays = dump_component(child, f"{i}/")
        children.append(spec)
        arrays.update(child_arrays)
    return {"children": children}, arrays


def _restore_combination(cls):
    def restore(config, view):
        children = _config(config, "children", list)
        if len(children) < 1:
            raise FormatError(f"a {cls.__name__} needs children")
        return cls([load_component(c, view, f"{i}/", _kernels.Kernel) for i, c in enumerate(children)])
    return restore


for _cls in _KERNEL_PARAMS:
    _register(_cls, _dump_kernel, _restore_kernel(_cls))
for _cls in (_kernels.Sum, _kernels.Product):
    _register(_cls, _dump_combination, _restore_combination(_cls))


# --- likelihoods ------------------------------------------------------------------------------------------
def _likelihood_settings(lik) -> dict:
    """The non-parameter constructor arguments."""
    if isinstance(lik, _likelihoods.Gaussian):
        return {}
    out = {"quadrature_points": lik.quadrature_points}
    if isinstance(lik, _likelihoods.StudentT):
        out["df"] = lik.df
    return out


def _dump_likelihood(lik):
    trainable, arrays = _dump_params(lik.parameters)
    return {"settings": _likelihood_settings(lik), "trainable": trainable}, arrays


_LIKELIHOOD_PARAMS = {_likelihoods.Gaussian: ("variance",), _likelihoods.Bernoulli: (),
                      _likelihoods.Poisson: (), _likelihoods.StudentT: ("scale",)}


def _restore_likelihood(cls):
    def restore(config, view):
        settings = _config(config, "settings", dict)
        kinds = {"quadrature_points": int, "df": (int, float)}
        kwargs = {key: _config(settings, key, kinds.get(key, object)) for key in settings}
        lik = cls(**_param_arrays(view, _LIKELIHOOD_PARAMS[cls]), **kwargs)
        _restore_trainable(lik.parameters, _config(config, "trainable", dict))
        return lik
    return restore


for _cls in _LIKELIHOOD_PARAMS:
    _register(_cls, _dump_likelihood, _restore_likelihood(_cls))


# --- GP models -------------------------------------------------------------------------------------------------
def _model_params(model) -> list:
    """The model's own parameters (not the kernel's or the likelihood's)."""
    own = [model._noise] if hasattr(model, "_noise") else []
    return own + ([model._mean] if model._mean is not None else [])


def _dump_regression(model):
    kernel, arrays = dump_component(model.kernel, "kernel/")
    trainable, values = _dump_params(_model_params(model))
    config = {"kernel": kernel, "has_mean": model._mean is not None, "trainable": trainable}
    arrays.update(values, X=model.X, y=model.y)
    if isinstance(model, (SGPR, FITC)):
        config["train_Z"] = model._Z.trainable
        arrays["Z"] = model.Z
    return config, arrays


def _mean_arg(config, view):
    return float(view.take("mean", ())) if _config(config, "has_mean", bool) else None


def _restore_regression(cls):
    def restore(config, view):
        kernel = load_component(_config(config, "kernel", dict), view, "kernel/", _kernels.Kernel)
        X = view.take("X", (None, None))
        y = view.take("y", (X.shape[0],))
        args = {"noise_variance": view.take("noise_variance", ()), "mean": _mean_arg(config, view)}
        if cls is GPR:
            model = GPR(X, y, kernel, **args)
        else:
            Z = view.take("Z", (None, X.shape[1]))
            model = cls(X, y, kernel, Z, train_Z=_config(config, "train_Z", bool), **args)
        _restore_trainable(_model_params(model), _config(config, "trainable", dict))
        return model
    return restore


for _cls in (GPR, SGPR, FITC):
    _register(_cls, _dump_regression, _restore_regression(_cls))


def _dump_svgp(model):
    kernel, arrays = dump_component(model.kernel, "kernel/")
    likelihood, lik_arrays = dump_component(model.likelihood, "likelihood/")
    arrays.update(lik_arrays, elbo_history=model.elbo_history_)
    trainable, values = _dump_params(_model_params(model))
    arrays.update(values)
    config = {"kernel": kernel, "likelihood": likelihood, "num_data": model.num_data, "whiten": model.whiten,
              "q_diag": model.q_diag, "train_Z": model._train_Z if model._Z is None else model._Z.trainable, "has_mean": model._mean is not None,
              "trainable": trainable, "num_inducing": None}
    if model._Z is None:
        config["num_inducing"] = model._num_inducing
    else:
        arrays.update(Z=model.Z, q_mu=model.q_mu, q_sqrt=model.q_sqrt)
        trainable.update(q_mu=model._q_mu.trainable, q_sqrt=model._q_sqrt.trainable)
    return config, arrays


def _restore_svgp(config, view):
    kernel = load_component(_config(config, "kernel", dict), view, "kernel/", _kernels.Kernel)
    likelihood = load_component(_config(config, "likelihood", dict), view, "likelihood/", _likelihoods.Likelihood)
    q_diag = _config(config, "q_diag", bool)
    fitted = config.get("num_inducing") is None
    Z = view.take("Z", (None, None)) if fitted else _config(config, "num_inducing", int)
    model = SVGP(kernel, likelihood, Z, _config(config, "num_data", int), whiten=_config(config, "whiten", bool),
                 q_diag=q_diag, mean=_mean_arg(config, view), train_Z=_config(config, "train_Z", bool))
    params = _model_params(model)
    if fitted:
        m = Z.shape[0]
        model.q_mu = view.take("q_mu", (m,))
        model.q_sqrt = view.take("q_sqrt", (m,) if q_diag else (m, m))
        params += [model._q_mu, model._q_sqrt]
    _restore_trainable(params, _config(config, "trainable", dict))
    model.elbo_history_ = view.take("elbo_history", (None,)).copy()
    return model


_register(SVGP, _dump_svgp, _restore_svgp)


# --- VAE -----------------------------------------------------------------------------------------------------------
_VAE_SETTINGS = {"input_dim": int, "latent_dim": int, "hidden": list, "decoder_hidden": list, "activation": str,
                 "likelihood": str, "dtype": str, "seed": int, "obs_logvar": (int, float),
                 "learn_obs_logvar": bool}


def _dump_vae(vae):
    config = {key: getattr(vae, key) for key in _VAE_SETTINGS}
    config.update(hidden=list(vae.hidden), decoder_hidden=list(vae.decoder_hidden), dtype=vae.dtype.name,
                  fits=vae._fits)
    arrays = {f"weights/{name}": w for name, w in vae.weights.items()}
    val = [np.nan if v is None else v for v in vae.history_["val_elbo"]]
    arrays.update({"history/loss": np.asarray(vae.history_["loss"], dtype=np.float64),
                   "history/val_elbo": np.asarray(val, dtype=np.float64)})
    return config, arrays


def _restore_vae(config, view):
    kwargs = {key: _config(config, key, kind) for key, kind in _VAE_SETTINGS.items()}
    if kwargs["dtype"] not in ("float32", "float64"):
        raise FormatError(f"dtype must be 'float32' or 'float64', got {kwargs['dtype']!r}")
    vae = VAE(**kwargs)
    vae._fits = _config(config, "fits", int)
    for name, w in vae.weights.items():
        w[...] = view.take(f"weights/{name}", w.shape, vae.dtype)
    loss = view.take("history/loss", (None,))
    val = view.take("history/val_elbo", loss.shape)
    vae.history_ = {"loss": loss.tolist(), "val_elbo": [None if np.isnan(v) else v for v in val.tolist()]}
    return vae


_register(VAE, _dump_vae, _restore_vae)


# --- files ------------------------------------------------------------------------------------------------------------
def _describe(file) -> str:
    if isinstance(file, (str, bytes, os.PathLike)):
        return os.fsdecode(file)
    return str(getattr(file, "name", repr(file)))


def save(obj, file) -> None:
    """Write a model, kernel, likelihood (or registered estimator) to ``file`` (a path, written
    exactly there, or a binary file object). The format is in this module's docstring."""
    from . import __version__

    _, dump, _ = _handler(obj)
    config, arrays = dump(obj)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    _check_values(arrays)
    meta = {"format": "varinf", "format_version": FORMAT_VERSION, "varinf_version": __version__,
            "class": type(obj).__name__, "config": config}
    entries = {_META: np.array(json.dumps(meta, allow_nan=False)), **arrays}
    if not isinstance(file, (str, bytes, os.PathLike)):
        np.savez(file, **entries)
        return
    path = os.fsdecode(file)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:  # an open file: numpy would otherwise append ".npz" to the name
        np.savez(f, **entries)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written file at ``path``


def _read(file) -> dict:
    """Every entry of the archive, read with allow_pickle=False."""
    if isinstance(file, (str, bytes, os.PathLike)):
        with open(file, "rb") as f:  # a missing file raises FileNotFoundError, not FormatError
            return _read(f)
    if not zipfile.is_zipfile(file):
        raise FormatError("not a varinf file: not a zip archive (truncated, corrupt or another format)")
    if hasattr(file, "seek"):
        file.seek(0)
    try:
        with np.load(file, allow_pickle=False) as npz:
            entries = {name: npz[name] for name in npz.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise FormatError(f"unreadable archive ({type(exc).__name__}: {exc})") from None
    for name, value in entries.items():
        if not isinstance(value, np.ndarray):  # numpy returns the raw bytes of a non-.npy member
            raise FormatError(f"not a varinf file: entry {name!r} is not a numpy array")
    return entries


def _parse_meta(entries: dict) -> dict:
    if _META not in entries:
        raise FormatError(f"not a varinf file: no {_META!r} entry (entries: {sorted(entries)[:10]})")
    raw = entries.pop(_META)
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise FormatError(f"{_META!r} must be a 0-d unicode array, got dtype {raw.dtype} shape {raw.shape}")
    try:
        meta = json.loads(str(raw))
    except ValueError as exc:
        raise FormatError(f"{_META!r} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "varinf":
        raise FormatError(f"not a varinf file: {_META!r} does not say format 'varinf'")
    version = _config(meta, "format_version", int)
    if version > FORMAT_VERSION:
        raise FormatError(f"written in format version {version} by varinf {meta.get('varinf_version')}; this "
                          f"varinf reads versions up to {FORMAT_VERSION}: upgrade varinf to load it")
    if version < 1:
        raise FormatError(f"invalid format version {version}")
    return meta


def load(file):
    """Read what ``save`` wrote (a path or a binary file object). Raises FormatError (a
    ValueError) naming the file for a corrupt, truncated, foreign or newer-version file."""
    try:
        entries = _read(file)
        meta = _parse_meta(entries)
        _check_values(entries)
        view = ArrayView(entries)
        obj = load_component(meta, view, "")
        extra = view.unused()
        if extra:
            raise FormatError(f"unexpected arrays {extra}")
        return obj
    except (ValueError, TypeError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, FormatError) else f"invalid contents ({type(exc).__name__}: {exc})"
        raise FormatError(f"{_describe(file)}: {msg}") from None
