"""vi.plot: each function draws the expected artists and rejects bad input naming the argument."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import varinf as vi
from varinf import plot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data_1d():
    rng = np.random.default_rng(0)
    X = np.sort(rng.uniform(-3, 3, 40))[:, None]  # [40, 1]
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.standard_normal(40)  # [40]
    return X, y


def _labels(ax):
    return [a.get_label() for a in ax.lines + ax.collections]


def test_predictive_gpr_draws_mean_bands_and_data(data_1d):
    X, y = data_1d
    model = vi.GPR(X, y, vi.kernels.SquaredExponential(), noise_variance=0.01)
    ax = plot.plot_predictive(model, num_points=50)
    assert _labels(ax) == ["predictive mean", "data", "y ± 2 sd", "f ± 2 sd"]
    mean_line, data_line = ax.lines
    grid = np.linspace(X.min(), X.max(), 50)
    np.testing.assert_allclose(mean_line.get_xdata(), grid)
    np.testing.assert_allclose(mean_line.get_ydata(), model.predict_f(grid[:, None])[0])
    np.testing.assert_allclose(data_line.get_ydata(), y)
    # The y band is wider than the f band by the noise: compare the vertical extents.
    y_band, f_band = (c.get_paths()[0].vertices[:, 1] for c in ax.collections)
    assert np.ptp(y_band) > np.ptp(f_band)


def test_predictive_units_and_inducing_ticks(data_1d):
    X, y = data_1d
    model = vi.SGPR(X, y, vi.kernels.SquaredExponential(), Z=X[::8], noise_variance=0.01)
    ax = plot.plot_predictive(model, xlim=(-4, 4), num_points=30, x_offset=10.0, y_offset=5.0, y_scale=2.0)
    mean_line, data_line, ticks = ax.lines
    assert ticks.get_label() == "inducing inputs (m=5)"
    np.testing.assert_allclose(ticks.get_xdata(), 10.0 + X[::8, 0])
    grid = np.linspace(-4, 4, 30)
    np.testing.assert_allclose(mean_line.get_xdata(), 10.0 + grid)
    np.testing.assert_allclose(mean_line.get_ydata(), 5.0 + 2.0 * model.predict_f(grid[:, None])[0])
    np.testing.assert_allclose(data_line.get_ydata(), 5.0 + 2.0 * y)


def test_predictive_svgp_needs_data_given_and_draws_into_ax(data_1d):
    X, y = data_1d
    model = vi.SVGP(vi.kernels.SquaredExponential(), vi.likelihoods.Gaussian(0.1), Z=X[::10], num_data=40)
    model.fit(X, y, iterations=20, progress=False, seed=0)
    axes = plt.subplots(1, 2)[1]
    assert plot.plot_predictive(model, ax=axes[1]) is axes[1]
    assert [line.get_label() for line in axes[1].lines] == ["predictive mean", "inducing inputs (m=4)"]
    plot.plot_predictive(model, X, y, ax=axes[0])
    assert len(axes[0].lines) == 3 and len(axes[0].collections) == 2


def test_predictive_classifier_draws_probabilities_without_bands(data_1d):
    X, y = data_1d
    labels = (y > 0).astype(float)
    model = vi.SVGP(vi.kernels.SquaredExponential(), vi.likelihoods.Bernoulli(), Z=X[::10], num_data=40)
    model.fit(X, labels, iterations=20, progress=False, seed=0)
    ax = plot.plot_predictive(model, X, labels, num_points=25)
    assert len(ax.collections) == 0
    probabilities = ax.lines[0].get_ydata()
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_predictive_rejects_2d_inputs(data_1d):
    X, y = data_1d
    model = vi.GPR(X, y, vi.kernels.SquaredExponential())
    with pytest.raises(ValueError, match="^X must hold 1-D inputs"):
        plot.plot_predictive(model, np.hstack([X, X]), y)
    with pytest.raises(ValueError, match="^y must have one value per row of X"):
        plot.plot_predictive(model, X, y[:-1])
    model2 = vi.GPR(np.hstack([X, X]), y, vi.kernels.SquaredExponential())
    with pytest.raises(ValueError, match="^model must have 1-D inputs"):
        plot.plot_predictive(model2)


@pytest.mark.parametrize("model", [object(), "gpr", None, vi.GPRegressor()], ids=["object", "str", "none", "estimator"])
def test_unsupported_models_get_a_message(model):
    with pytest.raises(ValueError, match="^model must be a varinf GPR, SGPR, FITC or SVGP, got"):
        plot.plot_predictive(model)


@pytest.mark.parametrize("history", [object(), "elbo", [[1.0], [2.0, 3.0]], {"a"}], ids=["object", "str", "ragged", "set"])
def test_training_curve_of_unsupported_history_gets_a_message(history):
    with pytest.raises(ValueError, match="^history must be a model, a dict of lists or a 1-D array"):
        plot.plot_training_curve(history)


def test_training_curve_svgp_and_array(data_1d):
    X, y = data_1d
    model = vi.SVGP(vi.kernels.SquaredExponential(), vi.likelihoods.Gaussian(0.1), Z=X[::10], num_data=40)
    model.fit(X, y, iterations=30, progress=False, seed=0)
    ax = plot.plot_training_curve(model)
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), model.elbo_history_ / 40)
    assert ax.get_xlabel() == "step"
    ax = plot.plot_training_curve([3.0, 2.0, 1.0])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3])
    # Long noisy series: the raw values and a running mean over 1% of them; the axis skips the first steps.
    values = np.concatenate([[-1e4], np.linspace(-2.0, 0.0, 499)])  # [500]
    ax = plot.plot_training_curve(values)
    raw, smooth = ax.lines
    np.testing.assert_allclose(raw.get_ydata(), values)
    np.testing.assert_allclose(smooth.get_xdata(), np.arange(5, 501))
    np.testing.assert_allclose(smooth.get_ydata()[-1], values[-5:].mean())
    assert ax.get_ylim()[0] > -3
    with pytest.raises(ValueError, match="^history is empty"):
        plot.plot_training_curve([])
    with pytest.raises(ValueError, match="^history must be"):
        plot.plot_training_curve(np.zeros((2, 2)))


@pytest.fixture(scope="module")
def vae_digits():
    X, labels = vi.datasets.load_digits_binarized()
    vae = vi.VAE(64, 2, hidden=(32,), seed=0).fit(X[:400], epochs=2, validation_data=X[400:500], progress=False)
    return vae, X[:100], labels[:100]


def test_training_curve_vae(vae_digits):
    vae, _, _ = vae_digits
    ax = plot.plot_training_curve(vae)
    train, val = ax.lines
    np.testing.assert_allclose(train.get_ydata(), -np.asarray(vae.history_["loss"]))
    np.testing.assert_allclose(val.get_ydata(), vae.history_["val_elbo"])
    assert ax.get_xlabel() == "epoch"


def test_reconstructions_grid(vae_digits):
    vae, X, _ = vae_digits
    ax = plot.plot_reconstructions(vae, X, n=10, ncols=4)
    (image,) = ax.images
    grid = np.ma.filled(image.get_array().astype(float), np.nan)
    # 10 images in rows of 4 -> 3 rows of originals + 3 of reconstructions, 8x8 pixels, 1 pixel gaps.
    assert grid.shape == (6 * 9 - 1, 4 * 9 - 1)
    np.testing.assert_array_equal(grid[:8, :8], X[0].reshape(8, 8))
    np.testing.assert_allclose(grid[9:17, :8], vae.reconstruct(X[:1]).reshape(8, 8), rtol=1e-6)
    # The last row holds reconstructions 9 and 10, then blanks.
    assert np.all(np.isnan(grid[45:53, 18:])) and not np.isnan(grid[45:53, :17][:, np.arange(17) != 8]).any()


def test_samples_grid_and_non_square_data(vae_digits):
    vae, X, _ = vae_digits
    ax = plot.plot_samples(vae, n=12, ncols=6, seed=1)
    grid = ax.images[0].get_array()
    assert grid.shape == (2 * 9 - 1, 6 * 9 - 1)
    np.testing.assert_allclose(grid[:8, :8], vae.sample(12, seed=1)[0].reshape(8, 8), rtol=1e-6)
    with pytest.raises(ValueError, match="^X has 60 values per row, not a square image"):
        plot.plot_reconstructions(vi.VAE(60, 2, hidden=(8,), seed=0), X[:, :60])
    with pytest.raises(ValueError, match="^image_shape"):
        plot.plot_reconstructions(vae, X, image_shape=(4, 4))
    ax = plot.plot_reconstructions(vae, X, n=2, ncols=2, image_shape=(4, 16))
    assert ax.images[0].get_array().shape == (2 * 5 - 1, 2 * 17 - 1)
    with pytest.raises(ValueError, match="^vae must be a varinf.VAE"):
        plot.plot_samples(object())


def test_latent_scatter(vae_digits):
    vae, X, labels = vae_digits
    ax = plot.plot_latent(vae, X, labels=labels)
    (points,) = ax.collections
    np.testing.assert_allclose(points.get_offsets(), vae.encode(X)[0], rtol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(v) for v in np.unique(labels)]
    assert len(plot.plot_latent(vae, X).collections) == 1
    with pytest.raises(ValueError, match="^labels must have one entry per row of X"):
        plot.plot_latent(vae, X, labels=labels[:-1])
    with pytest.raises(ValueError, match="^vae must have at least 2 latent dimensions"):
        plot.plot_latent(vi.VAE(64, 1, hidden=(8,), seed=0), X)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r'pip install "varinf\[plot\]"'):
        plot.plot_training_curve([1.0, 2.0])
