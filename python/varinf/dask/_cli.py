"""``python -m varinf fit | predict --dask``: a Dask client for the command's duration, training
data read from CSV or Parquet files by dask.dataframe and standardised on the cluster (one pass),
and predictions written as one file per input partition.

Every problem (no scheduler at the address, no file, a column that is not a number, ...) raises
``TableError`` with one line, as the command line's other errors do."""

from __future__ import annotations

import contextlib
import gc
import glob
import logging
import os
import shutil
import tempfile

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster
from distributed.scheduler import KilledWorker

from .._cli import Training, _check_output, choose_columns, moments, standardised
from .._tables import Table, TableError

__all__ = ["check_data", "check_partitioned_output", "describe", "predict_partitioned", "session",
           "training_data"]

# Seconds to wait for the scheduler at a --dask address before giving up.
_CONNECT_SECONDS = 5
# Suffixes of the files --dask reads, by reader.
_CSV, _PARQUET = (".csv", ".csv.gz"), (".parquet", ".pq")


def _one_line(err: BaseException) -> str:
    """An exception's message on one line, without dask's preamble about the backend it called."""
    text = str(err).split("Original Message:")[-1]
    return " ".join(text.split()) or type(err).__name__


# --- the cluster ------------------------------------------------------------------------------------

@contextlib.contextmanager
def session(spec: str):
    """A distributed.Client, the default one while the command runs: of the scheduler at ``spec``,
    or of a LocalCluster of N single-threaded worker processes for ``local:N``, closed after. A
    failure of the cluster in the middle of the command becomes a TableError."""
    with contextlib.ExitStack() as stack:
        if spec.startswith("local:"):
            # Workers log to stderr (a task that fails at ERROR); the command's stderr carries its
            # own one-line errors. The scheduler serves HTTP even without a dashboard, on port 8787
            # unless told, with a warning when that is taken (by another cluster): any free local
            # port instead.
            cluster = stack.enter_context(LocalCluster(
                n_workers=int(spec[len("local:"):]), threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.CRITICAL,
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(_connect(spec))
        try:
            yield client
        except (KilledWorker, RuntimeError) as err:  # RuntimeError: varinf.dask's "the cluster is gone"
            raise TableError(f"--dask {spec}: {_one_line(err)}") from None


def _connect(address: str):
    """A client of the scheduler at ``address``; TableError naming it when none answers."""
    try:
        return Client(address, timeout=_CONNECT_SECONDS)
    except ValueError as err:
        problem = (f"not a scheduler address ({_one_line(err)}); give tcp://host:port or local:N")
    except OSError as err:  # nothing listening
        problem = (f"no Dask scheduler answered ({_one_line(err)}); start one ('dask scheduler') or use "
                   "--dask local:N")
    # The half-made Client stays in a reference cycle through the traceback. Collected later, inside
    # another Client's or LocalCluster's start, its __del__ closes a loop whose lock that start holds:
    # the process hangs (seen in the test suite). Collected here, it closes at once.
    gc.collect()
    raise TableError(f"--dask {address}: {problem}")


def describe(client) -> str:
    """Where a fit ran, for its summary line: the cluster's workers and threads."""
    threads = client.nthreads()
    return f"Dask: {len(threads)} worker(s), {sum(threads.values())} thread(s)"


# --- reading -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _reading(path: str):
    """Turns what reading or computing on the files raises (pandas' and pyarrow's parse errors are
    ValueErrors; a missing or unreadable file an OSError) into one TableError naming them."""
    try:
        yield
    except (ValueError, OSError) as err:
        raise TableError(f"{path}: {_one_line(err)}") from None


def check_data(path: str) -> None:
    """Refuses, before a cluster starts, data that are not CSV or Parquet files, or a local name
    or glob that matches no file."""
    if not (path.endswith(_CSV + _PARQUET) or os.path.isdir(path)):
        raise TableError(f"{path}: --dask reads CSV files (.csv, .csv.gz) or Parquet files or folders "
                         "(.parquet), as a name or a quoted glob such as 'data/part-*.csv'")
    if "://" not in path and not glob.glob(path):  # dask's own message for this is about its backend
        raise TableError(f"{path}: no such file (no file matches)")


def _reader(path: str):
    """``read(columns=None)``: dd.read_csv or dd.read_parquet, by the name of ``path`` (checked by
    ``check_data``), of the chosen columns (CSV ones parsed as float64) or of all."""
    if path.endswith(_CSV):
        # A gzipped file cannot be split into blocks; a UTF-8 byte order mark is not part of a name.
        options = {"encoding": "utf-8-sig", **({"blocksize": None} if path.endswith(".gz") else {})}
        # float64 at parsing: a cell that is not a number fails as such, in whichever file it is
        # (dask infers dtypes from the first file only).
        return lambda columns=None: dd.read_csv(path, usecols=columns,
                                                dtype=None if columns is None else np.float64, **options)
    return lambda columns=None: dd.read_parquet(path, columns=columns)


def _columns(path: str) -> Table:
    """The column names of the files (of the first, for CSV) as a Table, to find columns by name
    and name the missing ones."""
    with _reading(path):
        names = [str(c) for c in _reader(path)().columns]
    return Table(path, names, "csv")  # named columns, as a CSV file's


def _read(path: str, names: list[str]):
    """The columns ``names``, in this order, of the files as a float64 dask DataFrame; TableError
    for a Parquet column that is not numeric."""
    with _reading(path):
        frame = _reader(path)(names)[names]
    wrong = {c: str(t) for c, t in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(t)}
    if wrong:
        raise TableError(f"{path}: column(s) {wrong} are not numeric")
    return frame.astype(np.float64)


# --- fit -----------------------------------------------------------------------------------------------

def training_data(path: str, target: str, features: list[str] | None, classifier: bool, client) -> Training:
    """The files' features and target as dask arrays persisted on the cluster, standardised with
    statistics computed there in one pass (with the check that every value is a finite number)."""
    table = _columns(path)
    feature_pos, target_pos = choose_columns(table, target, features)
    names = [table.columns[i] for i in feature_pos + [target_pos]]
    with _reading(path):
        frame = client.persist(_read(path, names))  # read once; the statistics and the fit use it
        A = frame.to_dask_array(lengths=True)  # [n, d + 1]
        if A.shape[0] == 0:
            raise TableError(f"{path}: no data rows")
        X, y = A[:, :-1], A[:, -1]
        *stats, bad = dask.compute(*moments(X, y, classifier, da.unique), (~da.isfinite(A)).sum(axis=0))
    for name, count in zip(names, bad):
        if count:
            raise TableError(f"{path}: column {name!r} has {count} values that are not finite numbers "
                             "(empty, NaN or Inf)")
    training = standardised(X, y, names[:-1], len(table.columns), tuple(stats))
    training.X, training.y = client.persist([training.X, training.y])
    return training


# --- predict ---------------------------------------------------------------------------------------------

def check_partitioned_output(path: str) -> None:
    """Refuses, before any work, an output that is not partitioned (one '*' in the file name, or a
    new .parquet folder) or cannot be written."""
    if path == "-":
        raise TableError("predict --dask writes one file per partition, not standard output: give -o a name with "
                         "a '*' (-o 'out/pred-*.csv') or a .parquet folder")
    if path.endswith(".parquet"):
        if os.path.exists(path):
            raise TableError(f"{path}: exists; remove it or give -o a new .parquet folder name")
    elif os.path.basename(path).count("*") != 1:
        raise TableError(f"-o {path}: partitioned output (--dask) needs a '*' in the file name, replaced by "
                         "each partition's number (-o 'out/pred-*.csv'), or a .parquet folder")
    _check_output(path)


def predict_partitioned(fitted, path: str, output: str) -> int:
    """Writes ``fitted``'s predictions of the files' rows to ``output``, one file per partition;
    returns how many. The model is one key of the graph: each worker receives it once."""
    fitted.feature_columns(_columns(path))  # raises naming the missing features
    frame = _read(path, fitted.features)
    meta = pd.DataFrame({c: np.zeros(0) for c in fitted.output_columns})
    predictions = frame.map_partitions(_predict_partition, dask.delayed(fitted, traverse=False), meta=meta)
    predictions = predictions.optimize()  # its partitions as written (dask may merge small Parquet files)
    with _reading(path):
        write = _write_parquet if output.endswith(".parquet") else _write_csv
        return write(predictions, output)


def _predict_partition(part: pd.DataFrame, fitted, partition_info=None) -> pd.DataFrame:
    """``fitted.predict`` on one partition's features [k, d]: a DataFrame of its output columns.
    ``partition_info`` (given by map_partitions) numbers the partition, for the errors."""
    X = part.to_numpy(dtype=np.float64)  # [k, d]
    bad = ~np.isfinite(X)
    if bad.any():
        column = part.columns[bad.any(axis=0).argmax()]
        raise ValueError(f"partition {partition_info['number']}: column {column!r} has {bad.sum()} values that "
                         "are not finite numbers (empty, NaN or Inf)")
    out = fitted.predict(X) if len(X) else np.zeros((0, len(fitted.output_columns)))  # a header-only file
    return pd.DataFrame(out, columns=fitted.output_columns, index=part.index)


def _write_csv(predictions, output: str) -> int:
    """One CSV per partition, the '*' of ``output`` replaced by its number (zero-padded, so the
    names sort in row order). They are written to a hidden folder beside and moved into place when
    all are done, so a failure leaves no partial output."""
    folder, name = os.path.split(output)
    width = len(str(predictions.npartitions - 1))
    staging = tempfile.mkdtemp(prefix=".varinf-", dir=folder or ".")
    try:
        written = predictions.to_csv(os.path.join(staging, name), index=False, float_format="%.10g",
                                     name_function=lambda i: str(i).zfill(width))
        for file in written:
            os.replace(file, os.path.join(folder, os.path.basename(file)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(written)


def _write_parquet(predictions, output: str) -> int:
    """A Parquet folder of one file per partition, written beside and moved into place when done."""
    staging = tempfile.mkdtemp(prefix=".varinf-", dir=os.path.dirname(output) or ".")
    try:
        predictions.to_parquet(os.path.join(staging, "out"), write_index=False)
        os.replace(os.path.join(staging, "out"), output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return predictions.npartitions
