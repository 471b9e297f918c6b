"""How varinf's scikit-learn estimators save and load themselves (varinf.serialization's
``_save_state`` / ``_from_state``): their parameters, their varinf model and every fitted
attribute, each checked on load. Needs no scikit-learn import of its own."""

from __future__ import annotations

import numpy as np

from .kernels import Kernel
from .serialization import FormatError, config_number, config_value, dump_component, load_component

__all__ = ["SaveableEstimator"]


def _json_value(name: str, value):
    """A parameter or fitted scalar as a JSON value (tuples as lists); ValueError otherwise."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, type) and issubclass(value, np.generic):  # a dtype such as np.float32
        value = np.dtype(value).name
    if isinstance(value, tuple):
        return [_json_value(name, v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"cannot save {name}={value!r}: only None, numbers, strings and tuples of them "
                     "(an int random_state, not a RandomState) can be saved")


class SaveableEstimator:
    """``vi.save`` / ``vi.load`` of an estimator (varinf.serialization's protocol): its
    parameters (the kernel as a component), its varinf model and every fitted attribute.
    Subclasses name their model class in ``_MODEL`` and check their own fitted attributes in
    ``_restore_fitted``."""

    def _save_state(self):
        """config ``{"params": {name: JSON value}, "kernel": spec or null, "model": spec or null,
        "fitted": {name: JSON value}, "arrays": {name: dtype}, "labels": {name: [values, dtype]},
        "lists": [name, ...]}``; arrays: the kernel's under ``kernel/``, the model's under
        ``model/``, numeric fitted arrays under ``fitted/`` and training histories under
        ``history/``."""
        config = {"params": {}, "kernel": None, "model": None, "fitted": {}, "arrays": {}, "labels": {},
                  "lists": []}
        arrays = {}
        for name, value in self.get_params(deep=False).items():
            if name == "kernel" and value is not None:
                config["kernel"], kernel_arrays = dump_component(value, "kernel/")
                arrays.update(kernel_arrays)
            elif name != "kernel":
                config["params"][name] = _json_value(name, value)
        for name, value in vars(self).items():
            if not name.endswith("_") or name.startswith("_"):
                continue
            if name == "model_":
                config["model"], model_arrays = dump_component(value, "model/")
                arrays.update(model_arrays)
            elif isinstance(value, list):  # a training history (NaN allowed)
                arrays[f"history/{name}"] = np.asarray(value, dtype=np.float64)
                config["lists"].append(name)
            elif isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
                arrays[f"fitted/{name}"] = value
                config["arrays"][name] = value.dtype.str
            elif isinstance(value, np.ndarray):  # class labels or feature names: strings
                config["labels"][name] = [value.tolist(), value.dtype.str]
            else:
                config["fitted"][name] = _json_value(name, value)
        return config, arrays

    # Fitted numbers beyond those every estimator has: name -> (int or float, minimum or None).
    _FITTED_NUMBERS: dict = {}

    @classmethod
    def _from_state(cls, config, arrays):
        est = cls(**_saved_params(cls, config, arrays))
        fitted = _FittedState(est, _saved_fitted(config, arrays))
        model = config_value(config, "model", (dict, type(None)))
        if model is not None:
            est.model_ = load_component(model, arrays, "model/", cls._MODEL)
            est._restore_fitted(fitted)
        fitted.finish()
        return est

    def _restore_fitted(self, fitted) -> int:
        """Set the fitted attributes from ``fitted`` (a _FittedState), each checked against the
        model and the parameters; the number of features."""
        d = fitted.number("n_features_in_", int, minimum=1)
        if d != self.model_.input_dim:
            raise FormatError(f"n_features_in_ is {d}, but the model takes {self.model_.input_dim} inputs")
        if "feature_names_in_" in fitted:
            names = fitted.labels("feature_names_in_", d)
            if not all(isinstance(name, str) for name in names.tolist()):
                raise FormatError("feature_names_in_ must hold strings")
        for name, (kind, minimum) in self._FITTED_NUMBERS.items():
            fitted.number(name, kind, minimum)
        return d


def _saved_params(cls, config, arrays) -> dict:
    """The constructor arguments in ``config`` (lists back to tuples): the estimator's
    parameters, flags as bools, the kernel as a component; a parameter that files of older varinf
    lack takes its default."""
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in config_value(config, "params", dict).items()}
    names = set(cls._get_param_names()) - {"kernel"}
    if not set(params) <= names:
        raise FormatError(f"params {sorted(params)} are not among {cls.__name__}'s {sorted(names)}")
    for name, default in cls().get_params(deep=False).items():
        if isinstance(default, bool):
            config_value(params, name, bool)
        elif isinstance(default, type) and issubclass(default, np.generic) and name in params:
            params[name] = _saved_dtype(params, name)
    kernel = config_value(config, "kernel", (dict, type(None)))
    if kernel is not None:
        params["kernel"] = load_component(kernel, arrays, "kernel/", allowed=Kernel)
    return params


def _saved_dtype(params, name: str) -> type:
    """A dtype parameter saved by its name (``_json_value``), back as its numpy type: float64
    or float32, the precisions the models offer."""
    try:
        kind = np.dtype(config_value(params, name, str)).type
    except TypeError:
        kind = None
    if kind not in (np.float64, np.float32):
        raise FormatError(f"params {name!r} must be 'float64' or 'float32', got {params[name]!r:.100}")
    return kind


def _saved_fitted(config, arrays) -> dict:
    """name -> value of every fitted attribute in the file (not yet checked)."""
    fitted = dict(config_value(config, "fitted", dict))
    dtypes = config_value(config, "arrays", dict)
    labels = config_value(config, "labels", dict)
    sources = ({name: arrays.take(f"fitted/{name}", dtype=config_value(dtypes, name, str)) for name in dtypes},
               {name: _label_array(name, values) for name, values in labels.items()},
               {name: arrays.take(f"history/{name}", (None,)).tolist() for name in config_value(config, "lists", list)})
    for source in sources:
        if set(source) & set(fitted):
            raise FormatError(f"fitted attributes {sorted(set(source) & set(fitted))} are saved twice")
        fitted.update(source)
    return fitted


def _label_array(name: str, saved) -> np.ndarray:
    """A saved 1-D array of labels: [values (strings, or numbers in an object array), dtype]."""
    error = FormatError(f"labels {name!r} must be [a list of strings or numbers, a str or object dtype], "
                        f"got {saved!r:.200}")
    if not (isinstance(saved, list) and len(saved) == 2 and isinstance(saved[0], list) and isinstance(saved[1], str)
            and all(isinstance(v, (str, int, float)) for v in saved[0])):
        raise error
    values, dtype = saved[0], np.dtype(saved[1])
    # A str dtype no wider than the longest label (or 64 characters): nothing large is allocated.
    width = max([64, *(len(str(v)) for v in values)])
    if not (dtype.kind == "O" or (dtype.kind == "U" and dtype.itemsize <= 4 * width)):
        raise error
    array = np.array(values, dtype=dtype)
    if array.tolist() != values:
        raise error
    return array


class _FittedState:
    """Fitted attributes read from a file: each is checked, then set on the estimator; ``finish``
    refuses those no check asked for."""

    def __init__(self, est, values: dict):
        self._est, self._values = est, values

    def __contains__(self, name):
        return name in self._values

    def _pop(self, name):
        if name not in self._values:
            raise FormatError(f"fitted attribute {name!r} is missing")
        return self._values.pop(name)

    def _set(self, name, value):
        setattr(self._est, name, value)
        return value

    def number(self, name, kind=float, minimum=None, above=False):
        value = config_number(self._values, name, kind, minimum, above)
        del self._values[name]
        return self._set(name, value)

    def array(self, name, shape, positive=False) -> np.ndarray:
        value = self._pop(name)
        if not (isinstance(value, np.ndarray) and value.dtype == np.float64 and value.shape == shape
                and (not positive or np.all(value > 0))):
            raise FormatError(f"fitted attribute {name!r} must be a float64 array of shape {shape}"
                              + (" with positive entries" if positive else ""))
        return self._set(name, value)

    def labels(self, name, size) -> np.ndarray:
        value = self._pop(name)
        if not (isinstance(value, np.ndarray) and value.shape == (size,)):
            raise FormatError(f"fitted attribute {name!r} must be an array of {size} labels")
        return self._set(name, value)

    def history(self, name) -> list:
        value = self._pop(name)
        if not isinstance(value, list):
            raise FormatError(f"fitted attribute {name!r} must be a training history")
        return self._set(name, value)

    def finish(self) -> None:
        if self._values:
            raise FormatError(f"unexpected fitted attributes {sorted(self._values)}"
                              + ("" if hasattr(self._est, "model_") else " in an unfitted estimator"))
