"""``python -m varinf fit`` and ``python -m varinf predict``: GP models fitted to numeric tables
(CSV with a header row, .npy, .npz), saved with ``varinf.save``, predicting in blocks of rows;
with ``--dask``, on a Dask cluster (varinf.dask._cli, imported only then).

The saved model is a :class:`TableModel`: the GP, fitted to standardised inputs (and outputs for
regression), and the scaling, so predictions come out in the file's units.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from . import kernels
from ._atomic import replacing
from ._tables import BLOCK_ROWS, Table, TableError, npz_vector, open_table
from ._threads import get_num_threads
from ._validation import is_dask
from .inducing import KMEANS_SAMPLE, inducing_points
from .likelihoods import Bernoulli, Gaussian
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

__all__ = ["KERNELS", "MODELS", "TableModel", "Training", "choose_columns", "fit_command", "moments",
           "predict_command", "standardised"]

MODELS = ("gpr", "sgpr", "svgp", "svgp-classifier")
KERNELS = ("rbf", "matern32", "matern52")

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


@register
class TableModel:
    """A GP fitted to a table: ``model`` sees ``(X - x_mean) / x_scale`` and, for regression,
    predicts ``(y - y_mean) / y_scale``; a classifier's labels ``classes[0]``, ``classes[1]``
    are 0 and 1.

    features: the training file's feature column names (indices as strings for numpy files),
    by which ``predict`` finds them in any file; columns: how many columns the training file had.
    """

    def __init__(self, kind: str, model, features: list[str], columns: int, x_mean, x_scale,
                 y_mean: float = 0.0, y_scale: float = 1.0, classes=None):
        self.kind = kind
        self.model = model
        self.features = list(features)
        self.columns = int(columns)
        self.x_mean = np.asarray(x_mean, dtype=float)  # [d]
        self.x_scale = np.asarray(x_scale, dtype=float)  # [d]
        self.y_mean, self.y_scale = float(y_mean), float(y_scale)
        self.classes = None if classes is None else np.asarray(classes, dtype=float)  # [2]

    def __repr__(self):
        return f"TableModel(kind={self.kind!r}, features={self.features}, model={self.model!r})"

    @property
    def is_classifier(self) -> bool:
        return self.kind == "svgp-classifier"

    @property
    def output_columns(self) -> list[str]:
        return ["probability", "class"] if self.is_classifier else ["mean", "std"]

    def predict(self, X) -> np.ndarray:
        """[n, 2]: mean and standard deviation of y in the file's units, or the probability of
        ``classes[1]`` and the more probable class."""
        Xs = (np.asarray(X, dtype=float) - self.x_mean) / self.x_scale  # [n, d]
        mean, var = self.model.predict_y(Xs)
        if self.is_classifier:
            return np.column_stack([mean, np.where(mean > 0.5, self.classes[1], self.classes[0])])  # [n, 2]
        return np.column_stack([self.y_mean + self.y_scale * mean, self.y_scale * np.sqrt(var)])  # [n, 2]

    # --- saving (varinf.serialization) -----------------------------------------------------------------
    def _save_state(self):
        """config ``{"kind", "features", "columns", "y_mean", "y_scale", "model": spec}``; arrays:
        the model's under ``model/``, ``x_mean`` [d], ``x_scale`` [d], ``classes`` [2] (classifier)."""
        spec, arrays = dump_component(self.model, "model/")
        config = {"kind": self.kind, "features": self.features, "columns": self.columns, "y_mean": self.y_mean,
                  "y_scale": self.y_scale, "model": spec}
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
        model = load_component(config_value(config, "model", dict), arrays, "model/", _MODEL_CLASSES[kind])
        likelihood = {"svgp": Gaussian, "svgp-classifier": Bernoulli}.get(kind)
        if model.input_dim != d or (likelihood and not isinstance(model.likelihood, likelihood)):
            raise FormatError(f"the saved model does not fit a {kind} model over {d} features: {model!r:.200}")
        y_mean, y_scale = config_number(config, "y_mean"), config_number(config, "y_scale", minimum=0, above=True)
        classes = arrays.take("classes", (2,)) if kind == "svgp-classifier" else None
        if classes is not None and not (classes[0] < classes[1] and (y_mean, y_scale) == (0.0, 1.0)):
            raise FormatError(f"a classifier needs two sorted classes and y_mean 0, y_scale 1, got "
                              f"{classes.tolist()}, {y_mean}, {y_scale}")
        x_scale = arrays.take("x_scale", (d,))
        if np.any(x_scale <= 0):
            raise FormatError("x_scale must be positive")
        return cls(kind, model, features, columns, arrays.take("x_mean", (d,)), x_scale, y_mean, y_scale, classes)

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

def _split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise TableError("--features is empty")
    return items


def _training_data(path: str, target: str | None, features: list[str] | None):
    """(X [n, d], y [n], feature names, column count) from a CSV, .npy or .npz file."""
    table = open_table(path)
    if table.kind == "npz":
        target = target or "y"
        y = npz_vector(path, target)
        feature_pos = ([table.column_index(f, "feature") for f in features] if features
                       else list(range(len(table.columns))))
        X = table.read(feature_pos)
        if X.shape[0] != y.shape[0]:
            raise TableError(f"{path}: X has {X.shape[0]} rows but {target!r} has {y.shape[0]}")
    else:
        if target is None:
            raise TableError("--target is required for CSV and .npy files (a column name, or an index for .npy)")
        feature_pos, target_pos = choose_columns(table, target, features)
        data = table.read(feature_pos + [target_pos])
        X, y = data[:, :-1], data[:, -1]
    return X, y, [table.columns[i] for i in feature_pos], len(table.columns)


def choose_columns(table: Table, target: str, features: list[str] | None) -> tuple[list[int], int]:
    """Positions of the feature columns (``features``, default every column but the target) and of
    the target column in ``table``."""
    target_pos = table.column_index(target, "target")
    feature_pos = ([table.column_index(f, "feature") for f in features] if features
                   else [i for i in range(len(table.columns)) if i != target_pos])
    if target_pos in feature_pos:
        raise TableError(f"the target column {target!r} is also listed in --features")
    if not feature_pos:
        raise TableError(f"{table.path}: no feature columns besides the target {target!r}")
    return feature_pos, target_pos


@dataclass
class Training:
    """Training data as the model sees them, X [n, d] standardised and targets y [n] (numpy or
    dask arrays), and what a TableModel needs to map them back to the file's units."""
    X: object
    y: object
    features: list
    columns: int
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float = 0.0
    y_scale: float = 1.0
    classes: np.ndarray | None = None


def moments(X, y, classifier: bool, unique=np.unique) -> tuple:
    """The statistics a fit standardises with: column means [d] and standard deviations [d] of X,
    y's mean and standard deviation, and for a classifier y's distinct values (``unique``:
    dask.array.unique for dask arrays, whose statistics are then computed in one pass)."""
    return X.mean(axis=0), X.std(axis=0), y.mean(), y.std(), unique(y) if classifier else None


def standardised(X, y, features: list[str], columns: int, stats: tuple) -> Training:
    """X and y (numpy or dask arrays) standardised with ``stats`` (``moments``, computed): a
    constant column keeps scale 1; a classifier's two labels become 0 and 1."""
    x_mean, x_std, y_mean, y_std, values = (np.asarray(v, dtype=float) if v is not None else None for v in stats)
    x_scale = np.where(x_std > 0, x_std, 1.0)
    Xs = (X - x_mean) / x_scale  # [n, d]
    if values is None:
        y_scale = float(y_std) if y_std > 0 else 1.0
        return Training(Xs, (y - y_mean) / y_scale, features, columns, x_mean, x_scale, float(y_mean), y_scale)
    if values.size != 2:
        raise TableError(f"svgp-classifier needs a target with exactly 2 distinct values, got {values.size}"
                         + (f" ({values[:5].tolist()}...)" if values.size > 2 else ""))
    return Training(Xs, (y == values[1]).astype(float), features, columns, x_mean, x_scale, classes=values)


def _build_and_fit(args, X, y):
    """The fitted GP on standardised X and targets y; a summary line of its objective."""
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
    if args.model == "sgpr":
        model = SGPR(X, y, kernel, Z=Z, noise_variance=_NOISE_INIT).fit(max_iter=args.iterations or 1000,
                                                                      progress=progress)
        return model, f"ELBO / n = {model.elbo() / n:.4f} (m = {m})"
    likelihood = Bernoulli() if args.model == "svgp-classifier" else Gaussian(_NOISE_INIT)
    model = SVGP(kernel, likelihood, Z=Z, num_data=n)
    model.fit(X, y, iterations=args.iterations or 2000, batch_size=min(args.batch_size, n),
              learning_rate=args.learning_rate, seed=args.seed, progress=progress)
    return model, f"ELBO / n = {model.elbo(X, y) / n:.4f} (m = {m}, all rows)"


def _inducing(X, m: int, seed: int) -> np.ndarray:
    """m k-means centres [m, d] of X's rows; of a sample of them when X is a dask array."""
    if is_dask(X):
        from .dask._partitioned import sample_rows
        X = sample_rows(X, KMEANS_SAMPLE, seed)
    return inducing_points(X, m, seed=seed)


def fit_command(args) -> int:
    _check_output(args.output)
    features = _split_list(args.features)
    classifier = args.model == "svgp-classifier"
    if args.dask is not None:
        _check_dask_fit(args)
    with _cluster(args.dask) as client:
        if client is None:
            X, y, names, columns = _training_data(args.data, args.target, features)
            training = standardised(X, y, names, columns, moments(X, y, classifier))
            where = f"{get_num_threads()} threads"
        else:
            training = _dask_cli().training_data(args.data, args.target, features, classifier, client)
            where = _dask_cli().describe(client)
        start = time.perf_counter()
        model, summary = _build_and_fit(args, training.X, training.y)
        seconds = time.perf_counter() - start
        fitted = TableModel(args.model, model, training.features, training.columns, training.x_mean,
                            training.x_scale, training.y_mean, training.y_scale, training.classes)
        save(fitted, args.output)  # on dask data, SGPR's posterior is computed on the cluster
    n, d = training.X.shape
    print(f"fitted {args.model} to {n} rows x {d} features of {args.data} in {seconds:.1f} s ({where}); "
          f"{summary}; saved {args.output}")
    return 0


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
        out.write(",".join(fitted.output_columns) + "\n")
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
