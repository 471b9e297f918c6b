"""How many threads varinf's C++ core uses (re-exported as ``varinf.get_num_threads`` and
``varinf.set_num_threads``)."""

from ._loader import core as _core
from ._validation import as_positive_int

__all__ = ["get_num_threads", "set_num_threads"]


def get_num_threads() -> int:
    """Threads varinf uses (OMP_NUM_THREADS, ``set_num_threads`` and threadpoolctl limit it)."""
    return _core.threads.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in varinf's parallel code, from every Python thread."""
    _core.threads.set_num_threads(as_positive_int(n, "n", maximum=2 ** 31 - 1))
