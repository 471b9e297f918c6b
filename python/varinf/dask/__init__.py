"""varinf on Dask (``pip install "varinf[dask]"``): the estimators for dask arrays and
DataFrames, following lightgbm.dask and xgboost.dask.

    import varinf as vi
    reg = vi.dask.SGPRRegressor(n_inducing=256).fit(X, y)   # X, y: dask arrays or DataFrames
    mean = reg.predict(X_new)                              # a lazy dask array
    local = reg.to_local()                                 # the plain vi.SGPRRegressor

The models take dask arrays too: ``vi.SGPR(X, y, kernel, Z)`` and ``vi.FITC`` evaluate their
objective where the chunks lie, ``vi.SVGP.fit(X, y)`` trains by synchronous data-parallel steps
on the cluster, and every ``predict_*`` given a dask array returns lazy dask arrays
(docs/math.md section 10). ``import varinf`` never imports dask; this subpackage does.
"""

_ESTIMATORS = ("SGPRRegressor", "SVGPRegressor", "SVGPClassifier")
__all__ = list(_ESTIMATORS)


def __getattr__(name):
    # The estimators import scikit-learn; the models' dask paths use this package without it.
    if name in _ESTIMATORS:
        from . import _estimators
        return getattr(_estimators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ESTIMATORS))
