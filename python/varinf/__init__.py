"""varinf: variational inference for Gaussian processes and VAEs with a C++ core.

    import varinf as vi
"""

import os as _os
from importlib.util import find_spec as _find_spec

# libgomp reads its wait policy once, when it loads. Passive waiting (sleep, not spin, at the
# end of a parallel region) keeps 2 threads from being slower than 1 on a machine where another
# process holds a core. A user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._errors import LinAlgError  # noqa: E402
from ._validation import as_positive_int as _as_positive_int  # noqa: E402
from ._loader import core as _core, variant as build_variant  # noqa: E402
from . import datasets, kernels, linalg  # noqa: E402
from . import plot  # noqa: E402,F401 (matplotlib is imported when a plot is drawn)
from .models import FITC, GPR, SGPR, SVGP, VAE  # noqa: E402
from . import likelihoods  # noqa: E402 (after models: it reads models._common)
from .serialization import FormatError, load, save  # noqa: E402
from . import _cli  # noqa: E402,F401 (registers the command line's TableModel with vi.load)

__version__ = "0.1.0"


def get_num_threads() -> int:
    """Threads varinf uses (OMP_NUM_THREADS, ``set_num_threads`` and threadpoolctl limit it)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in varinf's parallel code, from every Python thread."""
    _core.set_num_threads(_as_positive_int(n, "n", maximum=2 ** 31 - 1))


__all__ = ["GPR", "SGPR", "FITC", "SVGP", "VAE", "likelihoods", "datasets", "kernels", "linalg", "LinAlgError",
           "save", "load", "FormatError", "get_num_threads", "set_num_threads", "build_variant", "__version__"]

# The scikit-learn estimators load on first use (scikit-learn is optional and slow to import).
_ESTIMATORS = ("GPRegressor", "SGPRRegressor", "SVGPRegressor", "SVGPClassifier", "VAETransformer")
if _find_spec("sklearn") is not None:
    __all__ += list(_ESTIMATORS)


def __getattr__(name):
    if name in _ESTIMATORS:
        from . import estimators
        return getattr(estimators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ESTIMATORS))
