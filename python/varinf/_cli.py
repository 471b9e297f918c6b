"""``python -m varinf fit`` and ``python -m varinf predict``: GP models fitted to numeric tables
(CSV with a header row, .npy, .npz), saved with ``varinf.save``, predicting in blocks of rows;
with ``--dask``, on a Dask cluster (varinf.dask._cli, imported only then).

The saved model is a :class:`TableModel`: the GP, fitted to standardised inputs (and outputs for
regression), and the scaling, so predictions come out in the file's units. A classifier takes
K >= 2 classes (Bernoulli for 2, RobustMax or Softmax on K latent GPs sharing the kernel for
more); svgp takes several targets (``--target a,b``: one latent GP per target, each with its own
copy of the kernel and its own Gaussian noise; docs/math.md section 11), and so does sgpr (the
targets share the kernel, the inducing inputs and the noise variance; docs/math.md section 5.9).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import kernels
from ._atomic import replacing
from ._tables import BLOCK_ROWS, Table, TableError, npz_vector, open_table
from ._threads import get_num_threads
from ._validation import is_dask
from .inducing import KMEANS_SAMPLE, inducing_points
from .kernels import SeparateIndependent
from .likelihoods import Bernoulli, Gaussian, RobustMax, Softmax
from .models import GPR, SGPR, SVGP
from .serialization import (
    FormatError,
    config_number,
    config_value,
    dump_component,
    load,
    load_component,
    register,
    save,
)

__all__ = ["CLASSIFIER_LIKELIHOODS", "KERNELS", "MAX_CLASSES", "MODELS", "TableModel", "Training",
           "choose_columns", "fit_command", "moments", "predict_command", "standardised"]

MODELS = ("gpr", "sgpr", "svgp", "svgp-classifier")
# The models that fit several targets at once (--target a,b).
_SEVERAL_TARGETS = ("sgpr", "svgp")
KERNELS = ("rbf", "matern32", "matern52")
# --likelihood of svgp-classifier with more than 2 classes (2 classes: Bernoulli), the first the default.
CLASSIFIER_LIKELIHOODS = ("robustmax", "softmax")
# The most classes svgp-classifier takes (one latent GP each); it also needs 2 rows per class on
# average, so that a continuous target given by mistake is refused rather than fitted with n classes.
MAX_CLASSES = 1000

# Exact GP regression stores an n x n matrix; above this many rows, suggest a sparse model.
_GPR_MAX_ROWS = 20000
# Initial Gaussian noise variance in standardised units.
_NOISE_INIT = 0.1


# The model class each kind of TableModel holds.
_MODEL_CLASSES = {"gpr": GPR, "sgpr": SGPR, "svgp": SVGP, "svgp-classifier": SVGP}
# The kernel class of each --kernel.
_KERNEL_CLASSES = {"rbf": kernels.SquaredExponential, "matern32": kernels.Matern32, "matern52": kernels.Matern52}


def _kernel(name: str, d: int):
    """A kernel with one lengthscale per input (ARD), unit variance and lengthscales."""
    return _KERNEL_CLASSES[name](variance=1.0, lengthscales=np.ones(d))


def _label_text(value: float) -> str:
    """A class label as a column name: the shortest text that reads back as the same float,
    without a trailing ".0" (3.0 -> "3", 0.1 -> "0.1")."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _fits(kind: str, model, targets) -> bool:
    """Whether a loaded ``model`` has the likelihood and outputs a TableModel of ``kind`` needs:
    gpr, sgpr and svgp: one output per target (one without targets), svgp with a Gaussian
    likelihood; svgp-classifier: Bernoulli on one latent GP (2 classes), or RobustMax or Softmax
    of K > 2 classes."""
    if kind in _SEVERAL_TARGETS + ("gpr",):
        outputs = model.num_outputs == (len(targets) if targets else 1)
        return outputs and (kind != "svgp" or isinstance(model.likelihood, Gaussian))
    if kind == "svgp-classifier":
        likelihood = model.likelihood
        return ((isinstance(likelihood, Bernoulli) and model.num_outputs == 1)
                or (isinstance(likelihood, (RobustMax, Softmax)) and likelihood.num_classes > 2))
    return True


@register
class TableModel:
    """A GP fitted to a table: ``model`` sees ``(X - x_mean) / x_scale`` and, for regression,
    predicts ``(y - y_mean) / y_scale``; a classifier's labels ``classes[0]``, ..., ``classes[K-1]``
    are 0, ..., K - 1.

    features: the training file's feature column names (indices as strings for numpy files),
    by which ``predict`` finds them in any file; columns: how many columns the training file had;
    targets: None for one target, else the P >= 2 target names of an svgp with P outputs, whose
    ``y_mean`` and ``y_scale`` are then [P].
    """

    def __init__(self, kind: str, model, features: list[str], columns: int, x_mean, x_scale,
                 y_mean=0.0, y_scale=1.0, classes=None, targets=None):
        self.kind = kind
        self.model = model
        self.features = list(features)
        self.columns = int(columns)
        self.x_mean = np.asarray(x_mean, dtype=float)  # [d]
        self.x_scale = np.asarray(x_scale, dtype=float)  # [d]
        self.targets = None if targets is None else list(targets)
        if self.targets is None:
            self.y_mean, self.y_scale = float(y_mean), float(y_scale)
        else:
            self.y_mean = np.asarray(y_mean, dtype=float).reshape(len(self.targets))  # [P]
            self.y_scale = np.asarray(y_scale, dtype=float).reshape(len(self.targets))  # [P]
        self.classes = None if classes is None else np.asarray(classes, dtype=float)  # [K]

    def __repr__(self):
        targets = "" if self.targets is None else f"targets={self.targets}, "
        return f"TableModel(kind={self.kind!r}, {targets}features={self.features}, model={self.model!r})"

    @property
    def is_classifier(self) -> bool:
        return self.kind == "svgp-classifier"

    @property
    def output_columns(self) -> list[str]:
        """probability,class (2 classes); p_<class> for each class, then class (K > 2);
        mean,std (one target); mean_<target>,std_<target> for each target (several)."""
        if self.is_classifier:
            if len(self.classes) == 2:
                return ["probability", "class"]
            return [f"p_{_label_text(c)}" for c in self.classes] + ["class"]
        if self.targets is None:
            return ["mean", "std"]
        return [f"{stat}_{t}" for t in self.targets for stat in ("mean", "std")]

    def predict(self, X) -> np.ndarray:
        """The ``output_columns`` of each row: mean and standard deviation of y in the file's
        units (of each target, in pairs); for 2 classes, the probability of ``classes[1]`` and the
        more probable class; for K > 2 classes, the K class probabilities (the likelihood's,
        divided by their sum) and the most probable class."""
        Xs = (np.asarray(X, dtype=float) - self.x_mean) / self.x_scale  # [n, d]
        mean, var = self.model.predict_y(Xs)
        if self.is_classifier:
            if len(self.classes) == 2:
                return np.column_stack([mean, np.where(mean > 0.5, self.classes[1], self.classes[0])])  # [n, 2]
            p = mean / mean.sum(axis=1, keepdims=True)  # [n, K]
            return np.column_stack([p, self.classes[np.argmax(p, axis=1)]])  # [n, K + 1]
        if self.targets is None:
            return np.column_stack([self.y_mean + self.y_scale * mean, self.y_scale * np.sqrt(var)])  # [n, 2]
        out = np.empty((Xs.shape[0], 2 * len(self.targets)))  # [n, 2P]: mean and std of each target
        out[:, 0::2] = self.y_mean + self.y_scale * mean
        out[:, 1::2] = self.y_scale * np.sqrt(var)
        return out

    # --- saving (varinf.serialization) -----------------------------------------------------------------
    def _save_state(self):
        """config ``{"kind", "features", "columns", "y_mean", "y_scale", "model": spec}``; arrays:
        the model's under ``model/``, ``x_mean`` [d], ``x_scale`` [d], ``classes`` [K] (classifier).
        With several targets, config ``"targets"`` (their P names) instead of ``y_mean`` and
        ``y_scale``, which are arrays [P]."""
        spec, arrays = dump_component(self.model, "model/")
        config = {"kind": self.kind, "features": self.features, "columns": self.columns}
        if self.targets is None:
            config.update(y_mean=self.y_mean, y_scale=self.y_scale)
        else:
            config["targets"] = self.targets
            arrays.update(y_mean=self.y_mean, y_scale=self.y_scale)
        config["model"] = spec
        arrays.update(x_mean=self.x_mean, x_scale=self.x_scale)
        if self.classes is not None:
            arrays["classes"] = self.classes
        return config, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        kind = config_value(config, "kind", str)
        if kind not in MODELS:
            raise FormatError(f"kind must be one of {MODELS}, got {kind!r}")
        features = config_value(config, "features", list)
        if not (features and all(isinstance(f, str) for f in features) and len(set(features)) == len(features)):
            raise FormatError(f"features must be a list of distinct column names, got {features!r:.200}")
        d = len(features)
        columns = config_number(config, "columns", int, minimum=d)
        targets = config_value(config, "targets", list) if "targets" in config else None
        names = targets is not None and all(isinstance(t, str) for t in targets)  # before set(): hashable
        if targets is not None and not (kind in _SEVERAL_TARGETS and names and 2 <= len(targets) == len(set(targets))):
            raise FormatError(f"targets must be 2 or more distinct names (columns, or .npz arrays) of an svgp or sgpr "
                              f"model, got {targets!r:.200} for a {kind} model")
        model = load_component(config_value(config, "model", dict), arrays, "model/", _MODEL_CLASSES[kind])
        if model.input_dim != d or not _fits(kind, model, targets):
            raise FormatError(f"the saved model does not fit a {kind} model over {d} features"
                              + (f" and {len(targets)} targets" if targets else "") + f": {model!r:.200}")
        if targets is None:
            y_mean, y_scale = config_number(config, "y_mean"), config_number(config, "y_scale", minimum=0, above=True)
        else:
            y_mean, y_scale = arrays.take("y_mean", (len(targets),)), arrays.take("y_scale", (len(targets),))
            if np.any(y_scale <= 0):
                raise FormatError("y_scale must be positive")
        classes = None
        if kind == "svgp-classifier":
            K = 2 if isinstance(model.likelihood, Bernoulli) else model.likelihood.num_classes
            classes = arrays.take("classes", (K,))
            if not (np.all(classes[:-1] < classes[1:]) and (y_mean, y_scale) == (0.0, 1.0)):
                raise FormatError(f"a classifier needs {K} sorted classes (those of its likelihood) and y_mean 0, "
                                  f"y_scale 1, got {classes[:10].tolist()}, {y_mean}, {y_scale}")
        x_scale = arrays.take("x_scale", (d,))
        if np.any(x_scale <= 0):
            raise FormatError("x_scale must be positive")
        return cls(kind, model, features, columns, arrays.take("x_mean", (d,)), x_scale, y_mean, y_scale, classes,
                   targets)

    # --- choosing columns ----------------------------------------------------------------------------
    def feature_columns(self, table: Table) -> list[int]:
        """Positions of the model's features in ``table``, found by name (a numpy file's columns are
        named by index, as in the training file)."""
        missing = [f for f in self.features if f not in table.columns]
        if missing:
            raise TableError(f"{table.path}: missing feature column(s) {missing} that the model was fitted on"
                             + self._naming_hint(table))
        return [table.columns.index(f) for f in self.features]

    def _naming_hint(self, table: Table) -> str:
        """Why names may differ when the training file or ``table`` is a numpy file."""
        if all(f.isdigit() for f in self.features):
            return (f" (the model was fitted on a numpy file of {self.columns} columns, named by index: give a "
                    "numpy file with the features in the columns they had in the training file)")
        if table.kind != "csv":
            return " (a numpy file's columns are named by index: give a CSV file whose header names the features)"
        return ""


# --- fit ---------------------------------------------------------------------------------------------

def _split_list(text: str | None, option: str = "--features") -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise TableError(f"{option} is empty")
    return items


def _target_names(text: str, columns: list[str] | None = None) -> list[str]:
    """The target names of ``--target text``: one, or several separated by commas (a column whose
    own name holds a comma, one of ``columns``, is one target)."""
    if columns is not None and text in columns:
        return [text]
    names = _split_list(text, "--target")
    twice = sorted({t for t in names if names.count(t) > 1})
    if twice:
        raise TableError(f"--target names {', '.join(map(repr, twice))} twice")
    return names


def _check_targets(model: str, targets: list[str]) -> None:
    """Refuses several targets for a model of one output."""
    if len(targets) < 2:
        return
    if model == "svgp-classifier":
        raise TableError(f"--model svgp-classifier takes one --target column of class labels, got {len(targets)} "
                         f"({','.join(targets)}); several targets are for --model svgp or sgpr")
    if model not in _SEVERAL_TARGETS:
        raise TableError(f"--model {model} fits one target, but --target names {len(targets)} "
                         f"({','.join(targets)}): use --model svgp or sgpr for several targets, or fit one model "
                         "per target")


def _training_data(path: str, target: str | None, features: list[str] | None, model: str = "svgp"):
    """(X [n, d], y [n] or [n, P], feature names, column count, target names or None for one
    target) from a CSV, .npy or .npz file; ``model`` (--model) refuses several targets where
    it takes one, before the data are read."""
    table = open_table(path)
    if table.kind == "npz":
        targets = _target_names(target or "y")
        _check_targets(model, targets)
        ys = [npz_vector(path, t) for t in targets]
        feature_pos = ([table.column_index(f, "feature") for f in features] if features
                       else list(range(len(table.columns))))
        X = table.read(feature_pos)
        for t, y in zip(targets, ys):
            if X.shape[0] != y.shape[0]:
                raise TableError(f"{path}: X has {X.shape[0]} rows but {t!r} has {y.shape[0]}")
        y = ys[0] if len(ys) == 1 else np.column_stack(ys)
    else:
        if target is None:
            raise TableError("--target is required for CSV and .npy files (a column name, or an index for .npy; "
                             "several separated by commas for --model svgp or sgpr)")
        targets = _target_names(target, table.columns)
        _check_targets(model, targets)
        feature_pos, target_pos = _choose_columns(table, targets, features)
        data = table.read(feature_pos + target_pos)
        d = len(feature_pos)
        X, y = data[:, :d], (data[:, d] if len(targets) == 1 else data[:, d:])
        targets = [table.columns[i] for i in target_pos]
    return X, y, [table.columns[i] for i in feature_pos], len(table.columns), (targets if len(targets) > 1 else None)


def choose_columns(table: Table, target: str, features: list[str] | None) -> tuple[list[int], int]:
    """Positions of the feature columns (``features``, default every column but the target) and of
    the target column in ``table``."""
    feature_pos, (target_pos,) = _choose_columns(table, [target], features)
    return feature_pos, target_pos


def _choose_columns(table: Table, targets: list[str], features: list[str] | None) -> tuple[list[int], list[int]]:
    """Positions of the feature columns (``features``, default every column but the targets) and of
    the target columns in ``table``."""
    target_pos = [table.column_index(t, "target") for t in targets]
    if len(set(target_pos)) < len(target_pos):  # the same .npy column by two indices (1 and -2)
        raise TableError(f"--target names the column {table.columns[max(target_pos, key=target_pos.count)]!r} twice")
    feature_pos = ([table.column_index(f, "feature") for f in features] if features
                   else [i for i in range(len(table.columns)) if i not in target_pos])
    for t, pos in zip(targets, target_pos):
        if pos in feature_pos:
            raise TableError(f"the target column {t!r} is also listed in --features")
    if not feature_pos:
        shown = repr(targets[0]) if len(targets) == 1 else f"columns {targets}"
        raise TableError(f"{table.path}: no feature columns besides the target {shown}")
    return feature_pos, target_pos


@dataclass
class Training:
    """Training data as the model sees them, X [n, d] standardised and targets y [n] (or [n, P]
    for P targets; numpy or dask arrays), and what a TableModel needs to map them back to the
    file's units."""
    X: object
    y: object
    features: list
    columns: int
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float | np.ndarray = 0.0  # [P] for P targets
    y_scale: float | np.ndarray = 1.0
    classes: np.ndarray | None = None  # [K]
    targets: list | None = None  # the P >= 2 target names


def moments(X, y, classifier: bool, unique=np.unique) -> tuple:
    """The statistics a fit standardises with: column means [d] and standard deviations [d] of X,
    y's mean and standard deviation (of each column [P] for y [n, P]), and for a classifier y's
    distinct values (``unique``: dask.array.unique for dask arrays, whose statistics are then
    computed in one pass)."""
    y_mean, y_std = (y.mean(axis=0), y.std(axis=0)) if y.ndim == 2 else (y.mean(), y.std())
    return X.mean(axis=0), X.std(axis=0), y_mean, y_std, unique(y) if classifier else None


def standardised(X, y, features: list[str], columns: int, stats: tuple, targets: list[str] | None = None) -> Training:
    """X and y (numpy or dask arrays) standardised with ``stats`` (``moments``, computed): a
    constant column keeps scale 1 (a constant target too); a classifier's K sorted labels become
    0, ..., K - 1. ``targets``: the names of y's P columns when there are several."""
    x_mean, x_std, y_mean, y_std, values = (np.asarray(v, dtype=float) if v is not None else None for v in stats)
    x_scale = np.where(x_std > 0, x_std, 1.0)
    Xs = (X - x_mean) / x_scale  # [n, d]
    if values is None:
        if targets is not None:  # [P] each
            y_scale = np.where(y_std > 0, y_std, 1.0)
            return Training(Xs, (y - y_mean) / y_scale, features, columns, x_mean, x_scale, y_mean, y_scale,
                            targets=list(targets))
        y_scale = float(y_std) if y_std > 0 else 1.0
        return Training(Xs, (y - y_mean) / y_scale, features, columns, x_mean, x_scale, float(y_mean), y_scale)
    n, K = X.shape[0], values.size
    limit = max(2, min(MAX_CLASSES, n // 2))
    if K < 2:
        raise TableError(f"svgp-classifier needs a target with at least 2 distinct values, got 1 ({values[0]:g})")
    if K > limit:
        raise TableError(f"svgp-classifier needs a target of class labels: at most {limit} distinct values for "
                         f"{n} rows (2 rows per class on average, at most {MAX_CLASSES} classes), got {K} "
                         f"({', '.join(f'{v:g}' for v in values[:5])}, ...); for a continuous target use --model svgp")
    if K == 2:
        labels = (y == values[1]).astype(float)
    else:  # the position of each label among the sorted values, as numpy and dask arrays can compute it
        labels = (y[:, None] > values[None, :]).sum(axis=1).astype(float)
    return Training(Xs, labels, features, columns, x_mean, x_scale, classes=values)


def _build_and_fit(args, X, y, num_classes: int | None = None):
    """The fitted GP on standardised X and targets y ([n], or [n, P] for svgp and sgpr with P targets;
    labels 0, ..., num_classes - 1 for svgp-classifier); a summary line of its objective."""
    n, d = X.shape
    kernel = _kernel(args.kernel, d)
    m = min(args.inducing, n)
    progress = not args.no_progress
    if args.model == "gpr":
        if n > _GPR_MAX_ROWS:
            raise TableError(f"gpr on {n} rows needs a {n} x {n} matrix ({8 * n * n / 1e9:.0f} GB); "
                             "use --model sgpr or svgp")
        model = GPR(X, y, kernel, noise_variance=_NOISE_INIT).fit(max_iter=args.iterations or 1000,
                                                                  progress=progress)
        return model, f"log marginal likelihood / n = {model.log_marginal_likelihood() / n:.4f}"
    Z = _inducing(X, m, args.seed)  # [m, d]
    if args.model == "sgpr":  # P targets share the kernel, Z and the noise variance
        model = SGPR(X, y, kernel, Z=Z, noise_variance=_NOISE_INIT).fit(max_iter=args.iterations or 1000,
                                                                      progress=progress)
        targets = f", {y.shape[1]} targets" if y.ndim == 2 else ""
        return model, f"ELBO / n = {model.elbo() / n:.4f} (m = {m}{targets})"
    detail = ""
    if args.model == "svgp-classifier" and (num_classes or 2) > 2:
        name = args.likelihood or CLASSIFIER_LIKELIHOODS[0]
        likelihood = RobustMax(num_classes) if name == "robustmax" else Softmax(num_classes, seed=args.seed)
        detail = f"; {num_classes} classes, {name} likelihood"
    elif args.model == "svgp-classifier":
        likelihood = Bernoulli()
    elif y.ndim == 2:  # P targets: one latent GP each, with its own kernel and noise variance
        P = y.shape[1]
        kernel = SeparateIndependent([_kernel(args.kernel, d) for _ in range(P)])
        likelihood = Gaussian(np.full(P, _NOISE_INIT))
        detail = f"; {P} targets"
    else:
        likelihood = Gaussian(_NOISE_INIT)
    model = SVGP(kernel, likelihood, Z=Z, num_data=n)
    model.fit(X, y, iterations=args.iterations or 2000, batch_size=min(args.batch_size, n),
              learning_rate=args.learning_rate, seed=args.seed, progress=progress)
    return model, f"ELBO / n = {model.elbo(X, y) / n:.4f} (m = {m}, all rows{detail})"


def _inducing(X, m: int, seed: int) -> np.ndarray:
    """m k-means centres [m, d] of X's rows; of a sample of them when X is a dask array."""
    if is_dask(X):
        from .dask._partitioned import sample_rows
        X = sample_rows(X, KMEANS_SAMPLE, seed)
    return inducing_points(X, m, seed=seed)


def fit_command(args) -> int:
    _check_likelihood(args)
    _check_output(args.output)
    features = _split_list(args.features)
    classifier = args.model == "svgp-classifier"
    if args.dask is not None:
        _check_dask_fit(args)
    with _cluster(args.dask) as client:
        if client is None:
            X, y, names, columns, targets = _training_data(args.data, args.target, features, args.model)
            training = standardised(X, y, names, columns, moments(X, y, classifier), targets)
            where = f"{get_num_threads()} threads"
        else:
            training = _dask_cli().training_data(args.data, args.target, features, classifier, client)
            where = _dask_cli().describe(client)
        num_classes = None if training.classes is None else training.classes.size
        if num_classes == 2 and args.likelihood is not None:
            warnings.warn(f"--likelihood {args.likelihood} is for more than 2 classes; the target has 2, fitted with "
                          "the Bernoulli likelihood", UserWarning)
        start = time.perf_counter()
        model, summary = _build_and_fit(args, training.X, training.y, num_classes)
        seconds = time.perf_counter() - start
        fitted = TableModel(args.model, model, training.features, training.columns, training.x_mean,
                            training.x_scale, training.y_mean, training.y_scale, training.classes, training.targets)
        save(fitted, args.output)  # on dask data, SGPR's posterior is computed on the cluster
    n, d = training.X.shape
    print(f"fitted {args.model} to {n} rows x {d} features of {args.data} in {seconds:.1f} s ({where}); "
          f"{summary}; saved {args.output}")
    return 0


def _check_likelihood(args) -> None:
    """Refuses --likelihood for a model other than svgp-classifier."""
    likelihood = args.likelihood
    if likelihood is not None and args.model != "svgp-classifier":
        raise TableError(f"--likelihood {likelihood} is for --model svgp-classifier (more than 2 classes), "
                         f"not --model {args.model}")


def _dask_cli():
    """varinf.dask._cli, imported on the first use of --dask; TableError saying how to install dask
    when it is missing."""
    try:
        return importlib.import_module(".dask._cli", __package__)
    except ImportError as err:
        raise TableError(f"--dask needs dask and distributed ({err}); pip install \"varinf[dask]\"") from None


def _check_dask_fit(args) -> None:
    """Refuses, before a cluster starts, what ``fit --dask`` cannot do."""
    if args.model == "gpr":
        raise TableError("--model gpr does not take --dask: the exact GP needs the data in memory (an n x n "
                         "matrix); use --model sgpr or svgp on the cluster, or drop --dask")
    if args.target is None:
        raise TableError("--target is required with --dask (a column name)")
    targets = _target_names(args.target)
    _check_targets(args.model, targets)
    if len(targets) > 1:
        raise TableError(f"--dask fits one --target column, got {len(targets)} ({','.join(targets)}); fit several "
                         "targets without --dask")
    _dask_cli().check_data(args.data)


def _cluster(spec: str | None):
    """The Dask client of ``--dask spec`` for the command's duration, or None without --dask."""
    if spec is None:
        return contextlib.nullcontext()
    return _dask_cli().session(spec)


# --- predict -------------------------------------------------------------------------------------------

def _load_model(path: str) -> TableModel:
    if not os.path.exists(path):
        raise TableError(f"{path}: no such model file")
    try:
        fitted = load(path)
    except ValueError as err:  # FormatError, naming the file
        raise TableError(f"{err} (expected a model written by 'python -m varinf fit')") from None
    if not isinstance(fitted, TableModel):
        raise TableError(f"{path} holds a {type(fitted).__name__}, not a model written by 'python -m varinf fit'")
    return fitted


def predict_command(args, block_rows: int = BLOCK_ROWS) -> int:
    if args.dask is not None:
        return _predict_on_dask(args)
    to_file = args.output != "-"
    if to_file:
        _check_output(args.output)
    fitted = _load_model(args.model)
    table = open_table(args.data)
    usecols = fitted.feature_columns(table)
    rows = 0
    output = (replacing(args.output, "w", newline="", encoding="utf-8") if to_file
              else contextlib.nullcontext(sys.stdout))
    with output as out:
        csv.writer(out, lineterminator="\n").writerow(fitted.output_columns)
        for block in table.blocks(usecols, block_rows):
            np.savetxt(out, fitted.predict(block), fmt="%.10g", delimiter=",")
            rows += block.shape[0]
    if to_file:
        print(f"wrote {rows} predictions ({', '.join(fitted.output_columns)}) to {args.output}", file=sys.stderr)
    return 0


def _predict_on_dask(args) -> int:
    """``predict --dask``: one output file per partition of the data (varinf.dask._cli)."""
    dask_cli = _dask_cli()
    dask_cli.check_partitioned_output(args.output)
    dask_cli.check_data(args.data)
    fitted = _load_model(args.model)
    with _cluster(args.dask):
        files = dask_cli.predict_partitioned(fitted, args.data, args.output)
    print(f"wrote predictions ({', '.join(fitted.output_columns)}) of {args.data} to {files} file(s) "
          f"{args.output}", file=sys.stderr)
    return 0


# --- output files ----------------------------------------------------------------------------------------

def _check_output(path: str) -> None:
    """Refuses, before any work, an output path that cannot be written: a directory, a missing folder,
    a folder where no file can be created."""
    if os.path.isdir(path):
        raise TableError(f"{path}: is a directory; -o needs a file name")
    folder, name = os.path.split(path)
    folder = folder or "."
    if not name:
        raise TableError(f"{path!r}: -o needs a file name")
    if not os.path.isdir(folder):
        raise TableError(f"{path}: no folder {folder!r} to write it in")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise TableError(f"{path}: cannot write in {folder!r} ({err.strerror or err})") from None
