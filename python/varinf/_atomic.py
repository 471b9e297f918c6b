"""Files that appear whole or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets

__all__ = ["replacing"]


@contextlib.contextmanager
def replacing(path: str, mode: str = "wb", **open_args):
    """The file object of a new file beside ``path`` under a unique name; when the block ends
    it is flushed to disk and renamed over ``path`` (atomic: a reader sees the old file or the
    new one, and concurrent writers never share a temporary file). On any failure, Ctrl-C
    included, the temporary file is removed."""
    folder, name = os.path.split(path)
    part = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.part")
    # O_EXCL: never another writer's file. os.open, not tempfile.mkstemp: the file gets the
    # permissions of any new file (0o666 less the umask), not 0o600.
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        os.unlink(part)
        raise
