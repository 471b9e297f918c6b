"""varinf: variational inference for Gaussian processes and VAEs with a C++ core.

    import varinf as vi
"""

import os as _os
from importlib.util import find_spec as _find_spec

# libgomp reads its wait policy once, when it loads. Passive waiting (sleep, not spin, at the
# end of a parallel region) keeps 2 threads from being slower than 1 on a machine where another
# process holds a core. A user's own setting wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._version import __version__  # noqa: E402
from ._errors import LinAlgError  # noqa: E402
from ._loader import core as _core, variant as build_variant  # noqa: E402,F401
from ._threads import get_num_threads, set_num_threads  # noqa: E402
from . import datasets, kernels, likelihoods, linalg  # noqa: E402
from . import plot  # noqa: E402,F401 (matplotlib is imported when a plot is drawn)
from .models import FITC, GPR, SGPR, SVGP, VAE  # noqa: E402
from .models.svgp import Float32Warning  # noqa: E402
from .serialization import FormatError, load, save  # noqa: E402
from . import _cli  # noqa: E402,F401 (registers the command line's TableModel with vi.load)

__all__ = ["GPR", "SGPR", "FITC", "SVGP", "VAE", "likelihoods", "datasets", "kernels", "linalg", "LinAlgError",
           "Float32Warning", "save", "load", "FormatError", "get_num_threads", "set_num_threads", "build_variant", "__version__"]

# The scikit-learn estimators load on first use (scikit-learn is optional and slow to import).
_ESTIMATORS = ("GPRegressor", "SGPRRegressor", "SVGPRegressor", "SVGPClassifier", "VAETransformer")
if _find_spec("sklearn") is not None:
    __all__ += list(_ESTIMATORS)


def __getattr__(name):
    if name in _ESTIMATORS:
        from . import estimators
        return getattr(estimators, name)
    if name == "dask":  # varinf.dask imports dask (an optional extra): only when asked for
        import importlib
        return importlib.import_module(".dask", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ESTIMATORS))
