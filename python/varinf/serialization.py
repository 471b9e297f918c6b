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

Each class documents its config and arrays at its ``_save_state``: a model's config holds its
kernel's (and likelihood's) ``{"class", "config"}`` spec, its settings and its parameters'
``trainable`` flags; a parameter's value is the array of its name. Parameter values are stored
exactly, so a loaded model's predictions are bit-identical to the saved model's. Fit results
(``optimizer_result_``) are not stored; training histories are.

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

Saving and loading, class by class
----------------------------------
This module knows the file format, not the classes. Every saveable class (each kernel,
likelihood, model and estimator) defines its own pair of methods and registers itself, in its
own module, with the ``register`` decorator::

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

``save_parameters``, ``parameter_arrays`` and ``restore_trainable`` save and check a list of
``varinf.parameters.Parameter`` (values as arrays, ``trainable`` flags in the config). A new
kernel therefore touches its C++ file, its Python class and its tests, never this module.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import zipfile

import numpy as np

from ._atomic import replacing
from ._errors import FormatError
from ._npz import Member
from ._version import __version__

__all__ = ["FORMAT_VERSION", "MAX_DEPTH", "ArrayView", "FormatError", "config_number", "config_value",
           "dump_component", "load", "load_component", "parameter_arrays", "register", "restore_trainable",
           "save", "save_parameters"]

FORMAT_VERSION = 1
_META = "__varinf__"
# Components (a model's kernel, a Sum's children, an estimator's model) nest at most this deep.
MAX_DEPTH = 32


# --- the registry ----------------------------------------------------------------------------------
_REGISTRY: dict = {}  # class name -> class (with _save_state and _from_state)


def register(cls):
    """Class decorator: make ``cls`` saveable through its ``_save_state`` / ``_from_state``.
    Registration is by class name (``type(obj).__name__`` is what ``save`` looks up)."""
    for method in ("_save_state", "_from_state"):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"{cls.__name__} must define {method} to be registered")
    name = cls.__name__
    if _REGISTRY.get(name, cls) is not cls:
        raise ValueError(f"another class named {name!r} is already registered for saving")
    _REGISTRY[name] = cls
    return cls


def _state(obj) -> tuple:
    """(config, arrays) of a registered object (ValueError for anything else)."""
    if _REGISTRY.get(type(obj).__name__) is not type(obj):
        raise ValueError(f"cannot save a {type(obj).__name__}: not a saveable varinf class "
                         f"({', '.join(sorted(_REGISTRY))})")
    return obj._save_state()


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
        a = a.read() if isinstance(a, Member) else a
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


# --- components --------------------------------------------------------------------------------------
def dump_component(obj, prefix: str):
    """({"class", "config"}, arrays with names under ``prefix``) of a saveable object."""
    config, arrays = _state(obj)
    return {"class": type(obj).__name__, "config": config}, {prefix + k: np.asarray(v) for k, v in arrays.items()}


def load_component(spec, arrays, prefix: str, allowed=None):
    """The object ``dump_component`` described (``arrays`` as given to ``_from_state``); with
    ``allowed`` (a class or a tuple of classes), only a subclass of it."""
    name = config_value(spec, "class", str)
    cls = _REGISTRY.get(name)
    if cls is None or (allowed is not None and not issubclass(cls, allowed)):
        kinds = allowed if isinstance(allowed, tuple) else (allowed,) if allowed else ()
        expected = f" (expected a {' or '.join(c.__name__ for c in kinds)})" if kinds else ""
        raise FormatError(f"unknown class {name!r}{expected}")
    view = arrays.sub(prefix) if isinstance(arrays, ArrayView) else ArrayView(arrays, prefix)
    if view.depth > MAX_DEPTH:
        raise FormatError(f"components nest deeper than {MAX_DEPTH} levels")
    return cls._from_state(config_value(spec, "config", dict), view)


# --- parameters ----------------------------------------------------------------------------------------
def save_parameters(params) -> tuple:
    """({name: trainable}, {name: value}) of Parameter objects with distinct names."""
    return {p.name: p.trainable for p in params}, {p.name: p.value for p in params}


def parameter_arrays(view: ArrayView, names) -> dict:
    """{name: float64 scalar or 1-D array} for the named parameters."""
    out = {}
    for name in names:
        a = view.take(name)
        if a.ndim > 1:
            raise FormatError(f"parameter array {name!r} must be a scalar or 1-D, got shape {a.shape}")
        out[name] = a
    return out


def restore_trainable(params, trainable) -> None:
    """Set the ``trainable`` flags of ``params`` from the saved {name: flag}."""
    if not isinstance(trainable, dict) or set(trainable) != {p.name for p in params}:
        raise FormatError(f"trainable flags {trainable!r} do not match the parameters "
                          f"{[p.name for p in params]}")
    for p in params:
        p.trainable = config_value(trainable, p.name, bool)


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
    format is in this module's docstring. An object with a ``_saved_form()`` is saved as what
    that returns (a varinf.dask estimator as its local estimator, ``to_local()``)."""
    if hasattr(obj, "_saved_form"):
        obj = obj._saved_form()
    config, arrays = _state(obj)
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
def _members(archive: zipfile.ZipFile, length: int) -> dict:
    """name -> Member for every member of the archive."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    foreign = [name for name in names if not name.endswith(".npy")]
    if foreign:
        raise FormatError(f"not a varinf file: members {foreign[:5]} are not .npy arrays")
    if len(set(names)) != len(names):
        raise FormatError("not a varinf file: a member name appears twice")
    if sum(info.compress_size for info in infos) > length:
        raise FormatError("members overlap or extend past the end of the file")
    members = {info.filename[:-4]: Member(archive, info) for info in infos}
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
