"""Saving and loading varinf objects: ``vi.save(obj, path)``, ``model.save(path)``, ``vi.load(path)``.

The format
----------
A file is a zip archive written by ``numpy.savez`` (uncompressed; ``savez_compressed`` files
load too). It holds only numeric arrays and one string, read member by member from their
``.npy`` headers; pickled objects are refused, so loading a file never executes code.

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

Validation on load: the archive must be a readable zip with ``__varinf__``; every member is
a ``.npy`` array whose header (shape, dtype) agrees with the member's size, checked before
anything is allocated, and whose decompressed size is bounded by what its compressed bytes
can hold; the JSON must parse (finite numbers only) and name format "varinf" and a known
class; components nest at most ``MAX_DEPTH`` levels; every array the class needs must be
present with its dtype and a shape consistent with the config and the other arrays (checked
on its header before its data are read), and be finite (except the training histories under
``history/`` and ``elbo_history``, where NaN marks a missing value); every config scalar is
checked for type, finiteness and range; no unexpected array may be present. Any failure
raises ``varinf.FormatError`` (a ValueError) naming the file and the problem; only a path that
cannot be opened raises the OSError of ``open``.

Saving to a path writes a new, uniquely named file beside it, flushes it to disk and renames
it over the path: readers see the old file or the new one, concurrent saves to one path never
share a temporary file, and a failed save leaves nothing behind.

Version policy: ``format_version`` increases when the layout changes incompatibly. This
varinf reads every version up to ``FORMAT_VERSION`` and refuses a newer one with an error
asking to upgrade varinf.

Plugging in new classes
-----------------------
A class becomes saveable by providing two methods and the ``register`` decorator::

    from varinf.serialization import (register, dump_component, load_component, config_number,
                                      config_value)

    @register
    class GPRegressor:
        def _save_state(self):
            # config: JSON-able dict; arrays: {name: numpy array} (names without "/"
            # at the start; "/" separates nested components)
            spec, arrays = dump_component(self.model_, "model/")   # nest a varinf model
            return {"alpha": self.alpha, "model": spec}, arrays

        @classmethod
        def _from_state(cls, config, arrays):
            # arrays: an ArrayView; arrays.take(name, shape, dtype) checks dtype and shape
            # (None in a shape matches any length) before it reads the array, arrays.shape
            # checks without reading. Every array must be read (extra arrays are an error).
            # config_value / config_number check config entries; raise FormatError (or
            # ValueError) for anything invalid.
            est = cls(alpha=config_number(config, "alpha", minimum=0))
            est.model_ = load_component(config_value(config, "model", dict), arrays, "model/")
            return est

Registration is by class name (``type(obj).__name__`` is what ``save`` looks up).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import zipfile

import numpy as np

from . import kernels as _kernels
from ._atomic import replacing
from . import likelihoods as _likelihoods
from .models import FITC, GPR, SGPR, SVGP, VAE

__all__ = ["FORMAT_VERSION", "MAX_DEPTH", "FormatError", "config_number", "config_value", "dump_component",
           "load", "load_component", "model_input_dim", "register", "save"]

FORMAT_VERSION = 1
_META = "__varinf__"
# Components (a model's kernel, a Sum's children, an estimator's model) nest at most this deep.
MAX_DEPTH = 32
# Deflate expands its input at most 1032-fold ("Maximum compression factor", zlib technical
# details: https://www.zlib.net/zlib_tech.html): a larger declared size is a lie.
_MAX_DEFLATE_RATIO = 1032
# Bytes decompressed per read when an array's data are copied out of the archive.
_CHUNK = 1 << 20


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
    """The arrays of a component (names relative to ``prefix``); records which are read.

    ``arrays`` maps names to numpy arrays or to archive members, which are known by their
    headers until ``take`` reads them: a shape is checked before memory is allocated for it."""

    def __init__(self, arrays: dict, prefix: str = "", used: set | None = None):
        self._arrays, self._prefix = arrays, prefix
        self._used = set() if used is None else used

    @property
    def depth(self) -> int:
        """How deep the component is nested (0: the object saved)."""
        return self._prefix.count("/")

    def __contains__(self, name):
        return self._prefix + name in self._arrays

    def shape(self, name, shape=None, dtype=np.float64) -> tuple:
        """The shape of array ``name``, checked without reading it: exact dtype, and shape (None
        entries match any length)."""
        full = self._prefix + name
        if full not in self._arrays:
            raise FormatError(f"missing array {full!r}")
        a = self._arrays[full]
        if a.dtype != np.dtype(dtype):
            raise FormatError(f"array {full!r} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if shape is not None and (len(a.shape) != len(shape)
                                  or any(s is not None and s != t for s, t in zip(shape, a.shape))):
            want = tuple("any" if s is None else s for s in shape)
            raise FormatError(f"array {full!r} has shape {a.shape}, expected {want}")
        return a.shape

    def take(self, name, shape=None, dtype=np.float64) -> np.ndarray:
        """The array ``name``, checked as by ``shape`` before it is read, then for finiteness."""
        self.shape(name, shape, dtype)
        full = self._prefix + name
        a = self._arrays[full]
        a = a.read() if isinstance(a, _Member) else a
        self._used.add(full)
        _check_finite(full, a)
        return a

    def names(self, prefix: str) -> list:
        """The names (relative to this view) of the arrays under ``prefix``."""
        return [name[len(self._prefix):] for name in self._arrays if name.startswith(self._prefix + prefix)]

    def sub(self, prefix: str) -> ArrayView:
        return ArrayView(self._arrays, self._prefix + prefix, self._used)

    def unused(self) -> list:
        return sorted(set(self._arrays) - self._used)


def _is_history(name: str) -> bool:
    # a training history at the top level or nested in a component ("model/history/loss")
    return "/history/" in "/" + name or name.endswith("elbo_history")


def _check_numeric(name: str, dtype: np.dtype) -> None:
    if dtype.kind not in "fiub":
        raise FormatError(f"array {name!r} has non-numeric dtype {dtype}")


def _check_finite(name: str, a: np.ndarray) -> None:
    if a.dtype.kind == "f" and not _is_history(name) and not np.all(np.isfinite(a)):
        raise FormatError(f"array {name!r} contains NaN or Inf")


def config_value(config, key, kind):
    """config[key], checked to be of ``kind`` (bool is not an int here)."""
    if not isinstance(config, dict) or key not in config:
        raise FormatError(f"config is missing {key!r}")
    value = config[key]
    ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
    if not ok:
        raise FormatError(f"config {key!r} has the wrong type: {value!r}")
    return value


def config_number(config, key, kind=float, minimum=None, above=False):
    """config[key] as a finite ``kind`` (int; or float, which accepts an integer too), at least
    ``minimum`` (greater than it with ``above``)."""
    value = config_value(config, key, int if kind is int else (int, float))
    if not math.isfinite(value) or (minimum is not None and (value <= minimum if above else value < minimum)):
        bound = "" if minimum is None else f" {'>' if above else '>='} {minimum}"
        raise FormatError(f"config {key!r} must be a finite number{bound}, got {value!r}")
    return kind(value)


def model_input_dim(model) -> int:
    """How many input columns a model predicts from (an SVGP's inducing inputs must be placed)."""
    if isinstance(model, VAE):
        return model.input_dim
    return (model.Z if isinstance(model, SVGP) else model.X).shape[1]


# --- components --------------------------------------------------------------------------------------
def dump_component(obj, prefix: str):
    """({"class", "config"}, arrays with names under ``prefix``) of a saveable object."""
    _, dump, _ = _handler(obj)
    config, arrays = dump(obj)
    return {"class": type(obj).__name__, "config": config}, {prefix + k: np.asarray(v) for k, v in arrays.items()}


def load_component(spec, arrays, prefix: str, allowed=None):
    """The object ``dump_component`` described (``arrays`` as given to ``_from_state``)."""
    name = config_value(spec, "class", str)
    entry = _REGISTRY.get(name)
    if entry is None or (allowed is not None and not issubclass(entry[0], allowed)):
        raise FormatError(f"unknown class {name!r}" + (f" (expected a {allowed.__name__})" if allowed else ""))
    view = arrays.sub(prefix) if isinstance(arrays, ArrayView) else ArrayView(arrays, prefix)
    if view.depth > MAX_DEPTH:
        raise FormatError(f"components nest deeper than {MAX_DEPTH} levels")
    return entry[2](config_value(spec, "config", dict), view)


# --- parameters ----------------------------------------------------------------------------------------
def _dump_params(params) -> tuple:
    """({name: trainable}, {name: value}) of Parameter objects with distinct names."""
    return {p.name: p.trainable for p in params}, {p.name: p.value for p in params}


def _restore_trainable(params, trainable) -> None:
    if not isinstance(trainable, dict) or set(trainable) != {p.name for p in params}:
        raise FormatError(f"trainable flags {trainable!r} do not match the parameters "
                          f"{[p.name for p in params]}")
    for p in params:
        p.trainable = config_value(trainable, p.name, bool)


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
        _restore_trainable(k.parameters, config_value(config, "trainable", dict))
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
        children = config_value(config, "children", list)
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
        settings = config_value(config, "settings", dict)
        kinds = {"quadrature_points": int, "df": (int, float)}
        kwargs = {key: config_value(settings, key, kinds.get(key, object)) for key in settings}
        lik = cls(**_param_arrays(view, _LIKELIHOOD_PARAMS[cls]), **kwargs)
        _restore_trainable(lik.parameters, config_value(config, "trainable", dict))
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
    return float(view.take("mean", ())) if config_value(config, "has_mean", bool) else None


def _restore_regression(cls):
    def restore(config, view):
        kernel = load_component(config_value(config, "kernel", dict), view, "kernel/", _kernels.Kernel)
        n, d = view.shape("X", (None, None))  # every shape is checked before any data are read
        y = view.take("y", (n,))
        Z = None if cls is GPR else view.take("Z", (None, d))
        X = view.take("X")
        args = {"noise_variance": view.take("noise_variance", ()), "mean": _mean_arg(config, view)}
        if cls is GPR:
            model = GPR(X, y, kernel, **args)
        else:
            model = cls(X, y, kernel, Z, train_Z=config_value(config, "train_Z", bool), **args)
        _restore_trainable(_model_params(model), config_value(config, "trainable", dict))
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
    kernel = load_component(config_value(config, "kernel", dict), view, "kernel/", _kernels.Kernel)
    likelihood = load_component(config_value(config, "likelihood", dict), view, "likelihood/", _likelihoods.Likelihood)
    q_diag = config_value(config, "q_diag", bool)
    fitted = config.get("num_inducing") is None
    if fitted:  # every shape is checked before any data are read
        m, _ = view.shape("Z", (None, None))
        q_mu, q_sqrt = view.take("q_mu", (m,)), view.take("q_sqrt", (m,) if q_diag else (m, m))
    Z = view.take("Z") if fitted else config_number(config, "num_inducing", int, minimum=1)
    model = SVGP(kernel, likelihood, Z, config_number(config, "num_data", int, minimum=1),
                 whiten=config_value(config, "whiten", bool), q_diag=q_diag, mean=_mean_arg(config, view),
                 train_Z=config_value(config, "train_Z", bool))
    params = _model_params(model)
    if fitted:
        model.q_mu, model.q_sqrt = q_mu, q_sqrt
        params += [model._q_mu, model._q_sqrt]
    _restore_trainable(params, config_value(config, "trainable", dict))
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


def _vae_size(kwargs) -> int:
    """How many weights the VAE of ``kwargs`` has, by the layout of VAE.weights: each layer's
    weight [out, in] and bias [out], encoder D -> hidden -> 2J, decoder J -> decoder_hidden -> D,
    and a learned Gaussian log variance [D]."""
    D, J = kwargs["input_dim"], kwargs["latent_dim"]
    nets = ([D, *kwargs["hidden"], 2 * J], [J, *kwargs["decoder_hidden"], D])
    size = sum(a * b + b for net in nets for a, b in zip(net, net[1:]))
    return size + (D if kwargs["learn_obs_logvar"] and kwargs["likelihood"] == "gaussian" else 0)


def _restore_vae(config, view):
    kwargs = {key: config_value(config, key, kind) for key, kind in _VAE_SETTINGS.items()}
    if kwargs["dtype"] not in ("float32", "float64"):
        raise FormatError(f"dtype must be 'float32' or 'float64', got {kwargs['dtype']!r}")
    sizes = [kwargs["input_dim"], kwargs["latent_dim"], *kwargs["hidden"], *kwargs["decoder_hidden"]]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise FormatError(f"layer sizes must be integers >= 1, got {sizes!r:.200}")
    # The file must hold every weight the config describes before the network is allocated.
    stored = sum(math.prod(view.shape(name, dtype=kwargs["dtype"])) for name in view.names("weights/"))
    if _vae_size(kwargs) != stored:
        raise FormatError(f"the VAE's config describes {_vae_size(kwargs)} weights; the file holds {stored}")
    vae = VAE(**kwargs)
    vae._fits = config_number(config, "fits", int, minimum=0)
    for name, w in vae.weights.items():
        w[...] = view.take(f"weights/{name}", w.shape, vae.dtype)
    loss = view.take("history/loss", (None,))
    val = view.take("history/val_elbo", loss.shape)
    vae.history_ = {"loss": loss.tolist(), "val_elbo": [None if np.isnan(v) else v for v in val.tolist()]}
    return vae


_register(VAE, _dump_vae, _restore_vae)


# --- writing files ------------------------------------------------------------------------------------------------
def _describe(file) -> str:
    if isinstance(file, (str, bytes, os.PathLike)):
        return os.fsdecode(file)
    if _is_descriptor(file):
        return f"file descriptor {file}"
    return str(getattr(file, "name", repr(file)))


def _is_descriptor(file) -> bool:
    return isinstance(file, int) and not isinstance(file, bool)


def _check_values(arrays: dict) -> None:
    for name, a in arrays.items():
        _check_numeric(name, a.dtype)
        _check_finite(name, a)


def save(obj, file) -> None:
    """Write a model, kernel, likelihood (or registered estimator) to ``file``: a path (written
    exactly there, atomically), a file descriptor (left open) or a binary file object. The
    format is in this module's docstring."""
    from . import __version__

    _, dump, _ = _handler(obj)
    config, arrays = dump(obj)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if _META in arrays:
        raise ValueError(f"array name {_META!r} is reserved")
    _check_values(arrays)
    if max((name.count("/") for name in arrays), default=0) > MAX_DEPTH:
        raise ValueError(f"cannot save components nested deeper than {MAX_DEPTH} levels")
    meta = {"format": "varinf", "format_version": FORMAT_VERSION, "varinf_version": __version__,
            "class": type(obj).__name__, "config": config}
    entries = {_META: np.array(json.dumps(meta, allow_nan=False)), **arrays}
    if isinstance(file, (str, bytes, os.PathLike)):
        with replacing(os.fsdecode(file)) as f:
            np.savez(f, **entries)
    elif _is_descriptor(file):
        with open(file, "wb", closefd=False) as f:
            np.savez(f, **entries)
    else:
        np.savez(file, **entries)


# --- reading files ------------------------------------------------------------------------------------------------
# numpy's .npy preamble (magic, version, header length) and largest header by default (10000 bytes).
_HEADER_BYTES = 12 + 10000


def _check_compression(info: zipfile.ZipInfo) -> None:
    """Refuse a member the zip module cannot read, or whose declared size cannot come from its
    compressed bytes (a size that would only allocate memory)."""
    if info.compress_type == zipfile.ZIP_STORED:
        ok = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        ok = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size
    else:
        raise FormatError(f"member {info.filename!r} uses compression method {info.compress_type} "
                          "(varinf files are stored or deflated)")
    if not ok:
        raise FormatError(f"member {info.filename!r} declares {info.file_size} bytes, more than its "
                          f"{info.compress_size} compressed bytes can hold")


class _Member:
    """An array in the archive: its .npy header is read at once and checked against the member's
    size, its data are read (and decompressed, at most the declared size) only by ``read``."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
        self._archive, self._info = archive, info
        _check_compression(info)
        with archive.open(info) as f:
            head = io.BytesIO(f.read(min(info.file_size, _HEADER_BYTES)))
        version = np.lib.format.read_magic(head)
        if version not in ((1, 0), (2, 0)):
            raise FormatError(f"member {info.filename!r} has .npy format version {version}; expected 1.0 or 2.0")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        self.shape, fortran, self.dtype = read_header(head)
        if self.dtype.hasobject:
            raise FormatError(f"member {info.filename!r} holds pickled Python objects, which varinf never loads")
        self._order, self._start = "F" if fortran else "C", head.tell()
        self._nbytes = math.prod(self.shape) * self.dtype.itemsize
        if min(self.shape, default=0) < 0 or info.file_size != self._start + self._nbytes:
            raise FormatError(f"member {info.filename!r}: its header declares shape {self.shape} of "
                              f"{self.dtype} ({self._nbytes} bytes), but it holds {info.file_size - self._start}")

    def read(self) -> np.ndarray:
        data = np.empty(self._nbytes, dtype=np.uint8)
        with self._archive.open(self._info) as f:
            f.read(self._start)  # the header, read in __init__
            for begin in range(0, self._nbytes, _CHUNK):
                chunk = f.read(min(_CHUNK, self._nbytes - begin))
                if len(chunk) != min(_CHUNK, self._nbytes - begin):
                    raise FormatError(f"member {self._info.filename!r} ends before its declared size")
                data[begin:begin + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        return data.view(self.dtype).reshape(self.shape, order=self._order)


def _members(archive: zipfile.ZipFile, length: int) -> dict:
    """name -> _Member for every member of the archive."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    foreign = [name for name in names if not name.endswith(".npy")]
    if foreign:
        raise FormatError(f"not a varinf file: members {foreign[:5]} are not .npy arrays")
    if len(set(names)) != len(names):
        raise FormatError("not a varinf file: a member name appears twice")
    if sum(info.compress_size for info in infos) > length:
        raise FormatError("members overlap or extend past the end of the file")
    members = {info.filename[:-4]: _Member(archive, info) for info in infos}
    for name, member in members.items():
        if name != _META:
            _check_numeric(name, member.dtype)
    return members


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _parse_meta(members: dict) -> dict:
    if _META not in members:
        raise FormatError(f"not a varinf file: no {_META!r} entry (entries: {sorted(members)[:10]})")
    raw = members.pop(_META)
    if raw.shape != () or raw.dtype.kind != "U":
        raise FormatError(f"{_META!r} must be a 0-d unicode array, got dtype {raw.dtype} shape {raw.shape}")
    try:
        meta = json.loads(str(raw.read()), parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{_META!r} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != "varinf":
        raise FormatError(f"not a varinf file: {_META!r} does not say format 'varinf'")
    version = config_value(meta, "format_version", int)
    config_value(meta, "varinf_version", str)
    if version > FORMAT_VERSION:
        raise FormatError(f"written in format version {version} by varinf {meta.get('varinf_version')}; this "
                          f"varinf reads versions up to {FORMAT_VERSION}: upgrade varinf to load it")
    if version < 1:
        raise FormatError(f"invalid format version {version}")
    return meta


def _source(file, stack: contextlib.ExitStack):
    """A seekable binary file: ``file`` opened if a path, wrapped (left open) if a descriptor."""
    if isinstance(file, (str, bytes, os.PathLike)):
        return stack.enter_context(open(file, "rb"))  # a missing file raises FileNotFoundError, not FormatError
    if _is_descriptor(file):
        return stack.enter_context(open(file, "rb", closefd=False))
    if not callable(getattr(file, "read", None)):
        raise ValueError(f"file must be a path, a file descriptor or a binary file object, got {type(file).__name__}")
    seekable = getattr(file, "seekable", None)
    return file if callable(seekable) and seekable() else io.BytesIO(file.read())


def _load_from(source):
    length = source.seek(0, os.SEEK_END)
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise FormatError(f"not a zip archive (truncated, corrupt or another format: {exc})") from None
    with archive:
        members = _members(archive, length)
        meta = _parse_meta(members)
        view = ArrayView(members)
        obj = load_component(meta, view, "")
        extra = view.unused()
        if extra:
            raise FormatError(f"unexpected arrays {extra}")
        return obj


def load(file):
    """Read what ``save`` wrote from a path, a file descriptor (left open) or a binary file
    object. Raises FormatError (a ValueError) naming the file for a corrupt, truncated, foreign,
    crafted or newer-version file; a path that cannot be opened raises open's OSError."""
    with contextlib.ExitStack() as stack:
        source = _source(file, stack)
        try:
            return _load_from(source)
        except FormatError as exc:
            raise FormatError(f"{_describe(file)}: {exc}") from None
        except Exception as exc:  # any other failure of a corrupt or crafted file: zip, .npy, JSON, a constructor
            raise FormatError(f"{_describe(file)}: unreadable or invalid contents ({type(exc).__name__}: {exc})") \
                from exc
