"""Saving, loading, pickling and deep-copying every model, kernel and likelihood."""

import copy
import io
import pickle
import re
import warnings
import zipfile

import numpy as np
import pytest
import varinf as vi
from varinf import kernels as K
from varinf import likelihoods as L
from varinf import serialization
from _files import _edit_meta, _rewrite

pytestmark = pytest.mark.filterwarnings("ignore:L-BFGS-B stopped")

# --- objects under test ----------------------------------------------------------------------------
def _data(n=40, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, d))  # [n, d]
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.standard_normal(n)  # [n]
    return X, y


def _kernel():
    return K.SquaredExponential(lengthscales=[0.8, 1.5]) + K.White(0.05)


def _gpr():
    X, y = _data()
    return vi.GPR(X, y, _kernel(), noise_variance=0.1, mean="constant").fit(max_iter=5)


def _sgpr():
    X, y = _data()
    return vi.SGPR(X, y, K.Matern52(lengthscales=1.2) * K.Linear([0.5, 2.0]), Z=6, noise_variance=0.2).fit(max_iter=5)


def _fitc():
    X, y = _data()
    m = vi.FITC(X, y, K.Matern32(active_dims=[1]) + K.Linear(0.5, active_dims=[0]), Z=X[:5],
                noise_variance=0.3, mean=0.5, train_Z=False)
    m.kernel.kernels[1]._variance.trainable = False
    return m.fit(max_iter=5)


def _svgp_gaussian():
    X, y = _data()
    m = vi.SVGP(_kernel(), L.Gaussian(0.2), Z=X[:6], num_data=len(y), mean="constant")
    return m.fit(X, y, iterations=20, batch_size=16, seed=0, progress=False)


def _svgp_bernoulli():
    X, y = _data()
    m = vi.SVGP(K.RationalQuadratic(alpha=2.0), L.Bernoulli(quadrature_points=15), Z=5, num_data=len(y),
                whiten=False, q_diag=True)
    return m.fit(X, (y > 0).astype(float), iterations=10, seed=1, progress=False)


def _vae32():
    X = (np.random.default_rng(0).random((30, 12)) > 0.5).astype(np.float32)
    return vi.VAE(12, 3, hidden=(8,), seed=0).fit(X, epochs=2, batch_size=10, progress=False)


def _vae64():
    X = np.random.default_rng(1).standard_normal((30, 6))
    return vi.VAE(6, 2, hidden=(5, 4), decoder_hidden=(7,), activation="tanh", likelihood="gaussian",
                  dtype=np.float64, seed=3, obs_logvar=-0.5, learn_obs_logvar=True).fit(
        X[:20], epochs=2, batch_size=10, validation_data=X[20:], progress=False)


MODELS = {"GPR": _gpr, "SGPR": _sgpr, "FITC": _fitc, "SVGP-gaussian": _svgp_gaussian,
          "SVGP-bernoulli": _svgp_bernoulli, "VAE-float32": _vae32, "VAE-float64": _vae64}


def _outputs(model):
    """Every prediction of a model, as a list of arrays."""
    if isinstance(model, vi.VAE):
        X = np.random.default_rng(5).random((4, model.input_dim))
        Z = np.random.default_rng(6).standard_normal((3, model.latent_dim))
        return [*model.encode(X), model.decode(Z), model.reconstruct(X), model.theta]
    Xs = np.random.default_rng(7).uniform(-2, 2, (9, 2))
    out = [*model.predict_f(Xs), *model.predict_y(Xs), *model.predict_f(Xs, full_cov=True)]
    return out


def _assert_identical(a, b):
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        assert x.dtype == y.dtype
        assert np.array_equal(x, y)


def _save_load(obj, tmp_path):
    path = tmp_path / "obj.varinf"
    vi.save(obj, path)
    return vi.load(path)


# --- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_round_trip_gives_identical_predictions(name, tmp_path):
    model = MODELS[name]()
    path = tmp_path / "model.vi"
    model.save(path)
    assert path.exists() and not (tmp_path / "model.vi.npz").exists()  # written exactly at the path
    loaded = vi.load(str(path))
    assert type(loaded) is type(model)
    assert repr(loaded) == repr(model)
    _assert_identical(model, loaded)
    if isinstance(model, vi.VAE):
        assert loaded.dtype == model.dtype
        assert loaded.history_["loss"] == model.history_["loss"]
        assert loaded.history_["val_elbo"] == model.history_["val_elbo"]
        assert all(w.dtype == model.dtype for w in loaded.weights.values())
    else:
        assert [p.name for p in loaded.parameters] == [p.name for p in model.parameters]
        assert [p.trainable for p in loaded.parameters] == [p.trainable for p in model.parameters]
        for p, q in zip(loaded.parameters, model.parameters):
            assert np.array_equal(p.value, q.value)
    if isinstance(model, vi.SVGP):
        assert np.array_equal(loaded.elbo_history_, model.elbo_history_)


@pytest.mark.parametrize("name", ["GPR", "SVGP-gaussian", "VAE-float32"])
def test_round_trip_through_file_object(name):
    model = MODELS[name]()
    buf = io.BytesIO()
    vi.save(model, buf)
    buf.seek(0)
    _assert_identical(model, vi.load(buf))


@pytest.mark.parametrize("name", MODELS)
def test_loaded_model_trains_further(name, tmp_path):
    model = _save_load(MODELS[name](), tmp_path)
    before = [o.copy() for o in _outputs(model)]
    if isinstance(model, vi.VAE):
        X = np.random.default_rng(2).random((20, model.input_dim))
        model.fit(X if model.likelihood == "gaussian" else (X > 0.5), epochs=1, batch_size=10, progress=False)
    elif isinstance(model, vi.SVGP):
        X, y = _data()
        model.fit(X, y if isinstance(model.likelihood, L.Gaussian) else (y > 0).astype(float), iterations=5,
                  progress=False)
    else:
        model.fit(max_iter=5)
    assert any(not np.array_equal(a, b) for a, b in zip(before, _outputs(model)))


def test_fit_after_load_continues_like_the_original(tmp_path):
    X, y = _data()
    model = vi.GPR(X, y, _kernel(), noise_variance=0.1)
    loaded = _save_load(model, tmp_path)
    model.fit(max_iter=20)
    loaded.fit(max_iter=20)
    _assert_identical(model, loaded)


def test_unfitted_svgp_round_trip(tmp_path):
    X, y = _data()
    model = vi.SVGP(K.Matern12(), L.StudentT(scale=0.4, df=4.5), Z=7, num_data=len(y), mean=0.25)
    loaded = _save_load(model, tmp_path)
    assert repr(loaded) == repr(model) and loaded.mean == 0.25 and loaded.elbo_history_.size == 0
    with pytest.raises(ValueError, match="call fit"):
        loaded.predict_f(X)
    loaded.fit(X, y, iterations=5, seed=0, progress=False)
    model.fit(X, y, iterations=5, seed=0, progress=False)
    _assert_identical(model, loaded)


ALL_KERNELS = [
    K.SquaredExponential(variance=1.5, lengthscales=0.7),
    K.RBF(lengthscales=[0.5, 2.0]),
    K.Matern12(variance=0.3, active_dims=[1]),
    K.Matern32(lengthscales=[1.1, 0.9]),
    K.Matern52(variance=2.0),
    K.RationalQuadratic(lengthscales=0.6, alpha=0.4),
    K.Periodic(lengthscales=[0.5, 0.8], period=1.7),
    K.Linear(variance=[0.5, 1.5]),
    K.Linear(variance=0.3, active_dims=[0]),
    K.Constant(0.7),
    K.White(0.01),
    K.SquaredExponential(active_dims=[0]) * K.Periodic(active_dims=[1]) + K.Linear() + K.Constant(),
    K.Product([K.Sum([K.Matern32(), K.White()]), K.RationalQuadratic(alpha=3.0)]),
]


@pytest.mark.parametrize("kernel", ALL_KERNELS, ids=repr)
def test_kernel_round_trip(kernel, tmp_path):
    params = kernel.parameters
    params[-1].trainable = False  # fixed parameters stay fixed
    loaded = _save_load(kernel, tmp_path)
    assert type(loaded) is type(kernel) and repr(loaded) == repr(kernel)
    assert [p.trainable for p in loaded.parameters] == [p.trainable for p in params]
    assert [p.value.shape for p in loaded.parameters] == [p.value.shape for p in params]
    assert np.array_equal(loaded.theta(), kernel.theta())
    X = np.random.default_rng(0).standard_normal((6, 2))
    if "Periodic" in repr(kernel):
        # The C++ Periodic K is not bit-reproducible between two calls on the same kernel (its
        # vectorised sin/cos depend on buffer alignment; differences ~1e-17), so only closeness.
        np.testing.assert_allclose(loaded.K(X), kernel.K(X), rtol=1e-13, atol=1e-15)
    else:
        assert np.array_equal(loaded.K(X), kernel.K(X))
        assert np.array_equal(loaded.K(X, X[:3]), kernel.K(X, X[:3]))


def _latent_kernels():
    shared = K.Matern32(lengthscales=[1.1, 0.9])
    return [K.SeparateIndependent([K.Matern52(variance=2.0), K.SquaredExponential(lengthscales=[0.5, 2.0])]),
            K.LinearCoregionalization([shared, shared, K.Matern12()], W=np.arange(6.0).reshape(2, 3) - 2.5)]


@pytest.mark.parametrize("kernels", _latent_kernels(), ids=repr)
def test_latent_kernels_round_trip(kernels, tmp_path):
    kernels.parameters[-1].trainable = False
    loaded = _save_load(kernels, tmp_path)
    assert type(loaded) is type(kernels) and repr(loaded) == repr(kernels)
    assert [p.trainable for p in loaded.parameters] == [p.trainable for p in kernels.parameters]
    for a, b in zip(loaded.parameters, kernels.parameters):
        assert np.array_equal(a.value, b.value)
    # A kernel listed twice is one object again (its parameters stay shared).
    assert [[a is b for b in loaded.kernels] for a in loaded.kernels] == \
        [[a is b for b in kernels.kernels] for a in kernels.kernels]


def test_every_kernel_and_likelihood_class_is_covered():
    kernel_classes = {type(k) for k in ALL_KERNELS + _latent_kernels()}
    kernel_classes |= {type(c) for k in ALL_KERNELS if hasattr(k, "kernels") for c in k.kernels}
    exported = {getattr(K, n) for n in K.__all__} - {K.Kernel}
    assert exported <= kernel_classes
    assert {getattr(L, n) for n in L.__all__} - {L.Likelihood} == {type(lik) for lik in ALL_LIKELIHOODS}


ALL_LIKELIHOODS = [L.Gaussian(0.3), L.Bernoulli(), L.Poisson(quadrature_points=11),
                   L.StudentT(scale=0.2, df=5.5, quadrature_points=13), L.Gaussian([0.3, 0.1]),
                   L.RobustMax(3, epsilon=0.01, quadrature_points=12), L.Softmax(4, num_samples=7, seed=5),
                   L.HeteroskedasticGaussian(quadrature_points=9)]


@pytest.mark.parametrize("lik", ALL_LIKELIHOODS, ids=repr)
def test_likelihood_round_trip(lik, tmp_path):
    for p in lik.parameters:
        p.trainable = False
    loaded = _save_load(lik, tmp_path)
    assert type(loaded) is type(lik) and repr(loaded) == repr(lik)
    assert vars(loaded).get("quadrature_points") == vars(lik).get("quadrature_points")
    assert vars(loaded).get("df") == vars(lik).get("df")
    assert [p.trainable for p in loaded.parameters] == [False] * len(lik.parameters)
    for name in ("num_classes", "epsilon", "num_samples", "seed"):
        assert vars(loaded).get(name) == vars(lik).get(name)
    mu, var = np.array([-0.5, 0.2, 1.0]), np.array([0.1, 0.5, 2.0])
    columns = lik.latent_dim or max((p.size for p in lik.parameters), default=1)
    if columns > 1:  # [3, L]
        mu, var = np.outer(mu, np.linspace(1.0, 2.0, columns)), np.outer(var, np.ones(columns))
    for a, b in zip(loaded.predict_mean_and_var(mu, var), lik.predict_mean_and_var(mu, var)):
        assert np.array_equal(a, b)


def test_unsaveable_objects_are_refused(tmp_path):
    class MyKernel(K.SquaredExponential):
        pass

    for obj in (MyKernel(), object(), np.zeros(3)):
        with pytest.raises(ValueError, match="cannot save"):
            vi.save(obj, tmp_path / "x")


# --- pickle and deepcopy -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_pickle_round_trip(name):
    model = MODELS[name]()
    _outputs(model)  # builds every cached C++ object first
    _assert_identical(model, pickle.loads(pickle.dumps(model)))


@pytest.mark.parametrize("name", MODELS)
def test_deepcopy_is_independent(name):
    model = MODELS[name]()
    _outputs(model)
    clone = copy.deepcopy(model)
    _assert_identical(model, clone)
    if isinstance(model, vi.VAE):
        clone.theta[:] = 0.0
        assert not np.array_equal(model.theta, clone.theta)
    else:
        clone.kernel.parameters[0].value = clone.kernel.parameters[0].value * 2
        assert not np.array_equal(model.kernel.theta(), clone.kernel.theta())


@pytest.mark.parametrize("obj", ALL_KERNELS + ALL_LIKELIHOODS, ids=repr)
def test_deepcopy_and_pickle_after_core_was_built(obj):
    obj.core()
    for clone in (copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        assert repr(clone) == repr(obj)
        assert np.array_equal(clone.theta(), obj.theta())
        clone.core()
    assert obj.core() is not None


def test_sklearn_clone_of_kernel_param():
    sklearn_base = pytest.importorskip("sklearn.base")
    kernel = _kernel()
    kernel.core()
    X = np.random.default_rng(0).standard_normal((5, 2))
    assert np.array_equal(sklearn_base.clone(kernel, safe=False).K(X), kernel.K(X))


# --- corrupt, truncated and foreign files ------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    X, y = _data(n=10)
    path = tmp_path / "model.vi"
    vi.save(vi.SGPR(X, y, _kernel(), Z=X[:3], mean=0.1), path)
    return path


def _load_fails(path, pattern):
    with pytest.raises(vi.FormatError, match=re.escape(str(path)) + ".*" + pattern):
        vi.load(path)


def test_format_error_is_a_value_error():
    assert issubclass(vi.FormatError, ValueError)


def test_garbage_and_empty_files(tmp_path):
    path = tmp_path / "garbage"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    _load_fails(path, "not a zip")
    path.write_bytes(b"")
    _load_fails(path, "not a zip")
    np.save(tmp_path / "plain.npy", np.zeros(3))  # a .npy file, not an archive
    _load_fails(tmp_path / "plain.npy", "not a zip")


def test_missing_file_is_not_a_format_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        vi.load(tmp_path / "nothing-here")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(saved, fraction):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * fraction)])
    _load_fails(saved, "")


def test_corrupted_bytes_inside_an_entry(saved):
    data = bytearray(saved.read_bytes())
    i = data.index(b"X.npy") + 200  # inside the X array's data
    data[i:i + 16] = b"\xff" * 16
    saved.write_bytes(bytes(data))
    _load_fails(saved, "unreadable")  # the zip's CRC check catches it


def test_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, a=np.zeros(3))
    _load_fails(path, "no '__varinf__'")


def test_foreign_zip(tmp_path):
    path = tmp_path / "foreign.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__varinf__.npy", "hello")
        z.writestr("notes.txt", "hello")
    _load_fails(path, "not a varinf file")


def test_garbage_file_object():
    buf = io.BytesIO(b"PK\x03\x04" + b"\x00" * 50)
    with pytest.raises(vi.FormatError, match="not a zip"):
        vi.load(buf)


def test_compressed_archives_load(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    path = tmp_path / "compressed.vi"
    with open(path, "wb") as f:
        np.savez_compressed(f, **entries)
    _assert_identical(vi.load(saved), vi.load(path))


def test_bad_json(saved):
    _rewrite(saved, lambda e: e.update(__varinf__=np.array("{not json")))
    _load_fails(saved, "not valid JSON")


def test_meta_not_a_string(saved):
    _rewrite(saved, lambda e: e.update(__varinf__=np.zeros(2)))
    _load_fails(saved, "0-d unicode")


def test_wrong_format_name(saved):
    _edit_meta(saved, lambda meta: meta.update(format="other"))
    _load_fails(saved, "format 'varinf'")


def test_future_version_asks_to_upgrade(saved):
    _edit_meta(saved, lambda meta: meta.update(format_version=serialization.FORMAT_VERSION + 1))
    _load_fails(saved, "upgrade varinf")


def test_unknown_class(saved):
    _edit_meta(saved, lambda meta: meta.update({"class": "os.system"}))
    _load_fails(saved, "unknown class 'os.system'")


def test_kernel_class_must_be_a_kernel(saved):
    _edit_meta(saved, lambda meta: meta["config"]["kernel"].update({"class": "Gaussian"}))
    _load_fails(saved, "expected a Kernel")


def test_missing_array(saved):
    _rewrite(saved, lambda e: e.pop("kernel/0/lengthscales"))
    _load_fails(saved, "missing array 'kernel/0/lengthscales'")


def test_extra_array(saved):
    _rewrite(saved, lambda e: e.update(surprise=np.zeros(2)))
    _load_fails(saved, "unexpected arrays \\['surprise'\\]")


@pytest.mark.parametrize("name, change, pattern", [
    ("y", lambda y: y[:-1], "'y' has shape \\(9,\\), expected \\(10,\\)"),
    ("Z", lambda Z: Z[:, :1], "'Z' has shape \\(3, 1\\), expected \\('any', 2\\)"),
    ("X", lambda X: X[:, 0], "'X' has shape \\(10,\\)"),
    ("kernel/0/lengthscales", lambda v: np.ones((2, 2)), "must be a scalar or 1-D"),
    ("kernel/1/variance", lambda v: np.ones(3), "variance must be a scalar"),
    ("noise_variance", lambda v: np.ones(2), "'noise_variance' has shape"),
])
def test_wrong_shape(saved, name, change, pattern):
    _rewrite(saved, lambda e: e.update({name: change(e[name])}))
    _load_fails(saved, pattern)


def test_lengthscales_inconsistent_with_inputs(saved):
    _rewrite(saved, lambda e: e.update({"kernel/0/lengthscales": np.ones(3)}))
    _load_fails(saved, "3 lengthscales")


def test_wrong_dtype(saved):
    _rewrite(saved, lambda e: e.update(X=e["X"].astype(np.float32)))
    _load_fails(saved, "'X' has dtype float32, expected float64")


def test_nan_in_an_array(saved):
    def change(e):
        e["X"][3, 1] = np.nan
    _rewrite(saved, change)
    _load_fails(saved, "'X' contains NaN")


def test_invalid_parameter_value(saved):
    _rewrite(saved, lambda e: e.update(noise_variance=np.array(-1.0)))
    _load_fails(saved, "noise_variance must be at least")


def test_bad_config_types(saved):
    _edit_meta(saved, lambda meta: meta["config"].update(train_Z="yes"))
    _load_fails(saved, "'train_Z' has the wrong type")


class _Boom:
    executed = False

    def __reduce__(self):
        return (_Boom._explode, ())

    @staticmethod
    def _explode():
        _Boom.executed = True
        return "boom"


def test_object_arrays_are_rejected_without_running_code(saved):
    def change(e):
        e["y"] = np.array([_Boom()], dtype=object)
    with np.load(saved, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    change(entries)
    with open(saved, "wb") as f:
        np.savez(f, **entries)  # numpy pickles the object array into the archive
    _load_fails(saved, "pickled Python objects")
    assert not _Boom.executed


# --- the registry -------------------------------------------------------------------------------------------
def test_registered_class_with_nested_model(tmp_path):
    @serialization.register
    class Wrapper:
        def __init__(self, alpha, model=None):
            self.alpha, self.model = alpha, model

        def _save_state(self):
            spec, arrays = serialization.dump_component(self.model, "model/")
            return {"alpha": self.alpha, "model": spec}, {**arrays, "extra": np.arange(3.0)}

        @classmethod
        def _from_state(cls, config, arrays):
            assert np.array_equal(arrays.take("extra", (3,)), np.arange(3.0))
            return cls(config["alpha"], serialization.load_component(config["model"], arrays, "model/"))

    try:
        obj = Wrapper(0.5, _gpr())
        path = tmp_path / "w"
        vi.save(obj, path)
        loaded = vi.load(path)
        assert isinstance(loaded, Wrapper) and loaded.alpha == 0.5
        _assert_identical(obj.model, loaded.model)
        _rewrite(path, lambda e: e.update({"model/noise_variance": np.array([0.1, 0.2])}))
        _load_fails(path, "model/noise_variance")
    finally:
        serialization._REGISTRY.pop("Wrapper")


def test_register_requires_the_protocol():
    with pytest.raises(TypeError, match="_save_state"):
        serialization.register(type("NoState", (), {}))


def test_save_refuses_nonfinite_parameters(tmp_path):
    X, y = _data(n=10)
    model = vi.GPR(X, y, _kernel())
    model.X = model.X.copy()
    model.X[0, 0] = np.inf  # corrupted in memory after validation
    with warnings.catch_warnings(), pytest.raises(vi.FormatError, match="'X' contains NaN or Inf"):
        vi.save(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()
