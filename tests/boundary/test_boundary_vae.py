"""Boundary properties of vi.VAE: constructor arguments, elbo / encode / decode / fit on any input
give a clear Python exception naming the argument or a finite result of the right shape."""

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import varinf as vi  # noqa: E402

from _boundary import FLOATS, arrays, assert_finite, outcome, settings_for  # noqa: E402

BAD_INTS = st.one_of(st.integers(-2, 4), st.sampled_from([1.5, "3", None, True, np.int64(2), 2 ** 40, [2]]))
NAMES = ("X", "Z", "k", "input_dim", "latent_dim", "hidden", "decoder_hidden", "activation", "likelihood", "dtype",
         "obs_logvar", "epochs", "batch_size", "learning_rate", "n_samples", "objective", "beta", "warmup_epochs",
         "patience", "validation_data", "steps_per_callback", "n")


@settings_for(80)
@given(input_dim=BAD_INTS, latent_dim=BAD_INTS,
       hidden=st.one_of(st.just(()), st.lists(BAD_INTS, max_size=2), BAD_INTS),
       activation=st.sampled_from(["relu", "tanh", "softplus", "sigmoid", None, 1]),
       likelihood=st.sampled_from(["bernoulli", "gaussian", "poisson", None]),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, "float16", None, "f8"]),
       obs_logvar=st.one_of(FLOATS, st.sampled_from(["0", None])))
def test_vae_constructor_raises_or_builds_a_working_model(input_dim, latent_dim, hidden, activation, likelihood,
                                                          dtype, obs_logvar):
    # A layer of 2**40 units is refused (more than 2**31 parameters) before anything is allocated.
    model = outcome(lambda: vi.VAE(input_dim, latent_dim, hidden=hidden, activation=activation,
                                   likelihood=likelihood, dtype=dtype, seed=0, obs_logvar=obs_logvar), *NAMES)
    if model is None:
        return
    X = np.full((2, model.input_dim), 0.5)
    mu, logvar = model.encode(X)
    assert_finite(mu, logvar, model.decode(mu), shapes=[(2, model.latent_dim), (2, model.latent_dim),
                                                        (2, model.input_dim)])
    elbo = model.elbo(X)
    # A Gaussian variance exp(obs_logvar) near float32's smallest number makes log p(x | z)
    # overflow to -inf in float32: a correct float result; NaN never is.
    assert elbo.shape == (2,) and not np.any(np.isnan(elbo)) and np.all(elbo < np.inf)


MODELS = {lik: vi.VAE(3, 2, hidden=(4,), likelihood=lik, dtype=dt, seed=0)
          for lik, dt in (("bernoulli", np.float32), ("gaussian", np.float64))}


@settings_for(150)
@given(X=arrays(max_cols=4, elements=st.one_of(FLOATS, st.sampled_from([0.0, 0.5, 1.0]))), Z=arrays(max_cols=3),
       lik=st.sampled_from(sorted(MODELS)), k=BAD_INTS)
def test_vae_evaluations_raise_or_are_finite(X, Z, lik, k):
    if k == 2 ** 40:
        return  # valid, but 2^40 samples per datum would run for hours
    model = MODELS[lik]
    out = outcome(lambda: (model.encode(X), model.elbo(X, k=k), model.reconstruct(X)), *NAMES)
    if out is not None:
        (mu, logvar), elbo, rec = out
        n = elbo.shape[0]
        # Huge inputs (1e300 -> inf in float32 is rejected; 1e30 in float32 is not) may overflow
        # the network's activations: inf, never NaN, would be a correct float result then.
        for r in (mu, logvar, elbo, rec):
            assert not np.any(np.isnan(r))
        assert mu.shape == logvar.shape == (n, 2) and rec.shape == (n, 3)
    dec = outcome(lambda: model.decode(Z), *NAMES)
    if dec is not None:
        assert dec.shape == (np.asarray(Z).shape[0], 3) and not np.any(np.isnan(dec))


@settings_for(40)
@given(X=arrays(max_cols=4, elements=st.sampled_from([0.0, 0.5, 1.0, np.nan, 2.0]), max_rows=5),
       epochs=BAD_INTS, batch_size=BAD_INTS, learning_rate=st.one_of(FLOATS, st.sampled_from(["0.1", None])),
       n_samples=BAD_INTS, objective=st.sampled_from(["elbo", "iwae", "kl", None]),
       beta=st.one_of(FLOATS, st.sampled_from([None])))
def test_vae_fit_raises_or_trains_finite_weights(X, epochs, batch_size, learning_rate, n_samples, objective, beta):
    if 2 ** 40 in (epochs, n_samples):
        return  # valid but would run for hours
    model = vi.VAE(3, 2, hidden=(4,), seed=0)
    fitted = outcome(lambda: model.fit(X, epochs=min(epochs, 1) if isinstance(epochs, int) else epochs,
                                       batch_size=batch_size, learning_rate=learning_rate, n_samples=n_samples,
                                       objective=objective, beta=beta, progress=False), *NAMES)
    if fitted is not None:  # a diverged fit too leaves a working model
        assert_finite(model.theta, model.elbo(X))


@pytest.mark.parametrize("n", [0, -1, 1.5, "2", None])
def test_vae_sample_rejects_bad_n(n):
    with pytest.raises(ValueError, match="n must"):
        MODELS["bernoulli"].sample(n)


@pytest.mark.parametrize("value, match", [(np.ones((9, 9)), "shape"), (np.full((4, 3), np.nan), "NaN"),
                                          ("x", "shape")])
def test_vae_set_weights_checks_values(value, match):
    model = vi.VAE(3, 2, hidden=(4,), seed=0)
    with pytest.raises(ValueError, match=match):
        model.set_weights({"encoder.0.weight": value})
    with pytest.raises(ValueError, match="unknown weight"):
        model.set_weights({"encoder.9.weight": np.zeros(1)})
