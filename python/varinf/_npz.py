"""Arrays stored as .npy members of a zip archive (numpy's .npz layout), read without trusting
them: each member's header is read and checked against the member's size before any memory is
allocated for its data, and decompression stops at the declared size."""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np

from ._errors import FormatError

__all__ = ["Member"]

# Deflate expands its input at most 1032-fold ("Maximum compression factor", zlib technical
# details: https://www.zlib.net/zlib_tech.html): a larger declared size is a lie.
_MAX_DEFLATE_RATIO = 1032
# Bytes decompressed per read when an array's data are copied out of the archive.
_CHUNK = 1 << 20
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


class Member:
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
