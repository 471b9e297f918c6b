"""Numeric tables for the command line: CSV files with a header row (UTF-8, optionally gzipped),
.npy (a 2-D array) and .npz files (arrays X and y), read whole or in blocks of rows (memory
O(block) for CSV and .npy).

Every column has a name: a CSV file's header gives them; a numpy file's columns are named by
their index ("0", "1", ...).

Every problem with a file (damaged, truncated, not UTF-8, not numbers, ...) raises ``TableError``
with a one-line message naming the file and, where there is one, the row/column at fault.
"""

from __future__ import annotations

import contextlib
import csv
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ._npz import Member

__all__ = ["Table", "TableError", "open_table"]

# Rows per block when streaming.
BLOCK_ROWS = 10000

# What reading a damaged, truncated or foreign file raises (csv.Error, with its line, is handled
# by _csv_lines): ValueError (UnicodeDecodeError, numpy's format checks), OSError (gzip.BadGzipFile,
# permissions), EOFError (a truncated .gz), zlib.error (corrupt compressed data),
# zipfile.BadZipFile, MemoryError (a numpy header declaring an impossible size).
_READ_ERRORS = (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile, MemoryError)


class TableError(Exception):
    """A problem with a file or an argument, described in one line."""


@dataclass
class Table:
    """A file's columns (names for CSV, "0", "1", ... for .npy and .npz) and how to read its rows."""
    path: str
    columns: list[str]
    kind: str  # "csv", "npy" or "npz"

    def column_index(self, key: str, what: str) -> int:
        """The position of column ``key`` (a name; for files without names, an index)."""
        if key in self.columns:
            return self.columns.index(key)
        if self.kind != "csv" and key.lstrip("-").isdigit() and -len(self.columns) <= int(key) < len(self.columns):
            return int(key) % len(self.columns)
        shown = ", ".join(self.columns[:20]) + (", ..." if len(self.columns) > 20 else "")
        raise TableError(f"{self.path}: no {what} column {key!r} (columns: {shown})")

    def blocks(self, usecols: Sequence[int], block_rows: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
        """Float64 blocks [<= block_rows, len(usecols)] of the chosen columns, in file order."""
        reader = {"csv": self._csv_blocks, "npy": self._npy_blocks, "npz": self._npz_blocks}[self.kind]
        yield from reader(list(usecols), int(block_rows))

    def read(self, usecols: Sequence[int]) -> np.ndarray:
        """All rows of the chosen columns [n, len(usecols)]."""
        parts = list(self.blocks(usecols))
        if not parts:
            raise TableError(f"{self.path}: no data rows")
        return np.concatenate(parts)

    # --- CSV ----------------------------------------------------------------------------------------
    def _csv_blocks(self, usecols, block_rows):
        with contextlib.closing(_csv_lines(self.path)) as lines:
            next(lines, None)  # the header, read by open_table
            rows, first_line = [], 2
            for line, row in lines:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(self.columns):
                    raise TableError(f"{self.path}, line {line}: {len(row)} fields, but the header "
                                     f"has {len(self.columns)}")
                rows.append([row[i] for i in usecols])
                if len(rows) == block_rows:
                    yield self._to_float(rows, usecols, first_line)
                    rows, first_line = [], line + 1
            if rows:
                yield self._to_float(rows, usecols, first_line)

    def _to_float(self, rows, usecols, first_line) -> np.ndarray:
        try:
            block = np.array(rows, dtype=np.float64)  # [b, len(usecols)]
        except ValueError:
            block = None
        if block is None or not np.all(np.isfinite(block)):
            self._raise_bad_cell(rows, usecols, first_line)
        return block

    def _raise_bad_cell(self, rows, usecols, first_line):
        for r, row in enumerate(rows):
            for value, c in zip(row, usecols):
                try:
                    ok = np.isfinite(float(value))
                except ValueError:
                    ok = False
                if not ok:
                    shown = repr(value) if value.strip() else "an empty value"
                    raise TableError(f"{self.path}, data row {first_line - 1 + r} (line {first_line + r}), "
                                     f"column {self.columns[c]!r}: {shown} is not a finite number")
        raise TableError(f"{self.path}: a value near line {first_line} is not a number")  # not reached

    # --- numpy files -------------------------------------------------------------------------------
    def _npy_blocks(self, usecols, block_rows):
        data = _load_npy(self.path)
        for start in range(0, data.shape[0], block_rows):
            yield self._checked(np.asarray(data[start:start + block_rows][:, usecols], dtype=np.float64), start)

    def _npz_blocks(self, usecols, block_rows):
        data = _npz_matrix(self.path, "X")
        for start in range(0, data.shape[0], block_rows):
            yield self._checked(np.asarray(data[start:start + block_rows][:, usecols], dtype=np.float64), start)

    def _checked(self, block, start) -> np.ndarray:
        bad = np.argwhere(~np.isfinite(block))
        if bad.size:
            r, c = bad[0]
            raise TableError(f"{self.path}, row {start + r + 1}, column {c}: {block[r, c]} is not a finite number")
        return block


@contextlib.contextmanager
def _reading(path, what: str):
    """Turns the errors of reading a damaged file into a TableError naming it."""
    try:
        yield
    except _READ_ERRORS as err:
        raise TableError(f"{path}: not a readable {what} ({err or type(err).__name__})") from None


def _csv_lines(path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a CSV file, header included: UTF-8 (a byte order mark
    is dropped), gzipped when the name ends in .gz."""
    import gzip

    with _reading(path, "CSV file"):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            try:
                for row in reader:
                    yield reader.line_num, row
            except csv.Error as err:  # a field over csv's limit of 131072 characters, ...
                raise TableError(f"{path}, line {reader.line_num}: {err}") from None


def _load_npy(path) -> np.ndarray:
    with _reading(path, ".npy file"):
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    return _numeric_matrix(data, path)


def _npz_matrix(path, name) -> np.ndarray:
    """Array ``name`` of a .npz file, read whole, as a matrix. Its header is checked against the
    file before memory is allocated for it (varinf._npz)."""
    with _reading(path, ".npz file"):
        with zipfile.ZipFile(path) as archive:
            names = [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
            if name not in names:
                raise TableError(f"{path}: no array {name!r} (arrays: {', '.join(names)})")
            member = Member(archive, archive.getinfo(name + ".npy"))
            _check_matrix(member.shape, member.dtype, f"{path}: array {name!r}")
            data = member.read()
    return _numeric_matrix(data, f"{path}: array {name!r}")


def _numeric_matrix(data, what: str) -> np.ndarray:
    """``data`` as a 2-D numeric array (a 1-D one as a column); TableError naming ``what`` otherwise."""
    if not isinstance(data, np.ndarray):
        raise TableError(f"{what}: expected a 2-D numeric array, got {type(data).__name__}")
    _check_matrix(data.shape, data.dtype, what)
    return data[:, None] if data.ndim == 1 else data


def _check_matrix(shape, dtype, what: str) -> None:
    """TableError naming ``what`` unless ``shape`` and ``dtype`` are a 1-D or 2-D numeric array's."""
    if len(shape) not in (1, 2) or dtype.kind not in "fiub":
        raise TableError(f"{what}: expected a 2-D numeric array, got shape {shape} and dtype {dtype}")


def npz_vector(path, name: str) -> np.ndarray:
    """A 1-D numeric array ``name`` of a .npz file (the targets)."""
    data = _npz_matrix(path, name)
    if data.shape[1] != 1:
        raise TableError(f"{path}: array {name!r} must be 1-D, got shape {data.shape}")
    data = data[:, 0].astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(data))
    if bad.size:
        raise TableError(f"{path}: array {name!r}, row {bad[0] + 1}: {data[bad[0]]} is not a finite number")
    return data


def open_table(path: str) -> Table:
    """The columns of a CSV (header row), .npy or .npz file (array X); TableError when it cannot
    be read."""
    if not os.path.exists(path):
        raise TableError(f"{path}: no such file")
    if os.path.isdir(path):
        raise TableError(f"{path}: is a directory, not a data file")
    if path.endswith(".npy"):
        return Table(path, [str(i) for i in range(_load_npy(path).shape[1])], "npy")
    if path.endswith(".npz"):
        return Table(path, [str(i) for i in range(_npz_matrix(path, "X").shape[1])], "npz")
    header = _csv_header(path)
    return Table(path, header, "csv")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_header(path) -> list[str]:
    with contextlib.closing(_csv_lines(path)) as lines:
        _, header = next(lines, (0, []))
    if not header or not any(h.strip() for h in header):
        raise TableError(f"{path}: empty file; expected a CSV header row with column names")
    header = [h.strip() for h in header]
    if all(_is_number(h) for h in header):
        raise TableError(f"{path}: the first line ({','.join(header[:5])}...) looks like data; CSV files need a "
                         "header row with column names")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise TableError(f"{path}: duplicated column names {duplicates}")
    return header
