"""A diverging VAE fit: detected, reported with the step and the remedy, and the model is left at
its last good weights (finite ELBO, trainable again, saved and loaded as it is)."""

import warnings

import numpy as np
import pytest

import varinf as vi


@pytest.fixture(scope="module")
def data():
    return {"bernoulli": vi.datasets.load_digits_binarized()[0], "gaussian": vi.datasets.load_digits_scaled()[0]}


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_divergence_leaves_a_working_model(data, likelihood, tmp_path):
    X = data[likelihood]
    model = vi.VAE(64, 4, hidden=(32,), likelihood=likelihood, seed=0)
    start = model.elbo(X, seed=0).mean()
    # Adam's first step moves every weight by ~1e3: step 2's loss (1e16 and more) has collapsed.
    with pytest.warns(RuntimeWarning, match=r"diverged at step 2 \(epoch 1\): the minibatch loss .* collapsed "
                                            r".*back where step 1 started.*Use a smaller learning_rate"):
        model.fit(X, epochs=3, learning_rate=1e3, progress=False)
    after = model.elbo(X, seed=0)
    assert np.isfinite(after).all()
    assert after.mean() > start - 1.0, (start, after.mean())
    assert np.isfinite(model.history_["loss"]).all()

    path = tmp_path / "vae.npz"
    vi.save(model, path)
    loaded = vi.load(path)
    np.testing.assert_array_equal(loaded.theta, model.theta)
    np.testing.assert_array_equal(loaded.elbo(X, seed=0), after)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sane learning rate trains without a warning
        model.fit(X, epochs=3, learning_rate=1e-3, progress=False)
    assert model.elbo(X, seed=0).mean() > after.mean() + 1.0


def test_nonfinite_gradient_with_finite_loss_changes_nothing(data):
    """A learned log variance of 89 (float32): exp(-89) is finite, exp(89) is not, so the loss
    is finite and its gradient NaN at step 1; the weights stay as they were."""
    X = data["gaussian"]
    model = vi.VAE(64, 4, hidden=(32,), likelihood="gaussian", learn_obs_logvar=True, seed=0)
    model.set_weights({"decoder.obs_logvar": np.full(64, 89.0)})
    before = model.theta.copy()
    assert np.isfinite(model.elbo(X)).all()
    with pytest.warns(RuntimeWarning, match=r"diverged at step 1 \(epoch 1\): non-finite gradient"):
        model.fit(X, epochs=1, progress=False)
    np.testing.assert_array_equal(model.theta, before)


def test_diverged_trainer_takes_no_further_step(data):
    """The C++ trainer stops for good at a divergence: its Adam moments never act again."""
    X = np.ascontiguousarray(data["bernoulli"])
    model = vi.VAE(64, 4, hidden=(32,), seed=0)
    trainer = vi._core.vae.VaeTrainerF32(model._core, X, 128, 1, "elbo", 1.0, 0.0, 1e3, 5)
    first = trainer.run(14)
    assert first["diverged_step"] == 2 and first["divergence"] in ("collapse", "nonfinite_loss")
    assert np.isfinite(trainer.first_loss) and trainer.loss_limit > trainer.first_loss
    theta = model.theta.copy()
    again = trainer.run(14)
    assert again["diverged_step"] == 2 and len(again["losses"]) == 0
    np.testing.assert_array_equal(model.theta, theta)


def test_nonfinite_loss_stops_and_restores(data):
    X = data["gaussian"]
    model = vi.VAE(64, 4, hidden=(32,), likelihood="gaussian", seed=0)
    start = model.elbo(X, seed=0).mean()
    with pytest.warns(RuntimeWarning, match=r"diverged at step \d+"):
        model.fit(X, epochs=5, learning_rate=1e30, progress=False)
    assert len(model.history_["loss"]) < 5
    assert model.elbo(X, seed=0).mean() > start - 1.0
