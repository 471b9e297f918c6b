"""Tests of vi.VAE: hand-written gradients against finite differences and the numpy reference,
the IWAE identities, PyTorch equivalence (when installed), learning on real data, bad input."""


import numpy as np
import pytest

import varinf as vi
from varinf import _core as core
from varinf.reference import vae as ref
from _peers import import_peer
from _grad import central_differences


def reference_params(model):
    """The model's weights as the numpy reference's params dict (copies)."""
    w = {k: v.copy() for k, v in model.weights.items()}
    n_enc = len(model.hidden) + 1
    n_dec = len(model.decoder_hidden) + 1
    return {
        "encoder": [(w[f"encoder.{i}.weight"], w[f"encoder.{i}.bias"]) for i in range(n_enc)],
        "decoder": [(w[f"decoder.{i}.weight"], w[f"decoder.{i}.bias"]) for i in range(n_dec)],
        "obs_logvar": w.get("decoder.obs_logvar"),
    }


def make_data(model, B, rng):
    X = rng.uniform(size=(B, model.input_dim))
    if model.likelihood == "bernoulli":
        X = (X > 0.5).astype(float)
    return X


CONFIGS = [
    # (hidden, activation, likelihood, learn_obs_logvar)
    ((), "tanh", "bernoulli", False),
    ((6,), "tanh", "bernoulli", False),
    ((6, 5), "softplus", "bernoulli", False),
    ((6,), "softplus", "gaussian", False),
    ((6, 5), "tanh", "gaussian", True),
    ((), "softplus", "gaussian", True),
]


@pytest.mark.parametrize("hidden,activation,likelihood,learn", CONFIGS)
@pytest.mark.parametrize("objective,k,beta", [("elbo", 1, 1.0), ("elbo", 3, 0.6), ("iwae", 4, 1.0), ("iwae", 2, 0.5)])
def test_gradient_matches_central_differences(hidden, activation, likelihood, learn, objective, k, beta):
    rng = np.random.default_rng(1)
    model = vi.VAE(5, 3, hidden=hidden, activation=activation, likelihood=likelihood, dtype=np.float64,
                   seed=3, obs_logvar=-0.4, learn_obs_logvar=learn)
    theta = model.theta
    theta += 0.3 * rng.standard_normal(theta.size)  # away from the initial symmetric scale
    X = make_data(model, 4, rng)
    eps = rng.standard_normal((4, k, 3))
    loss, grads, _ = model.loss_and_grad(X, eps, k=k, beta=beta, objective=objective)
    flat = np.concatenate([g.ravel() for g in grads.values()])
    theta0 = theta.copy()
    fd = central_differences(loss_at(model, X, eps, k=k, beta=beta, objective=objective), theta0)
    theta[:] = theta0
    # Every weight and bias gets a gradient, and each matches its finite difference.
    assert flat.size == theta0.size
    np.testing.assert_allclose(flat, fd, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(fd).max()))


def loss_at(model, X, eps, **options):
    """theta -> the minibatch loss with the model's weights set to theta (in place)."""
    def loss(t):
        model.theta[:] = t
        return model.loss_and_grad(X, eps, **options)[0]
    return loss


def hidden_preactivations(layers, x):
    """Pre-activations of the hidden ReLU layers of an MLP on x."""
    out = []
    for W, b in layers[:-1]:
        out.append(x @ W.T + b)
        x = np.maximum(out[-1], 0.0)
    return out


def test_relu_gradient_away_from_kinks():
    """ReLU nets: central differences are valid when no pre-activation is within h of 0."""
    rng = np.random.default_rng(7)
    model = vi.VAE(6, 2, hidden=(8, 7), activation="relu", dtype=np.float64, seed=11)
    X = make_data(model, 5, rng)
    eps = rng.standard_normal((5, 2, 2))
    params = reference_params(model)
    mu, lv = model.encode(X)
    z = np.repeat(mu, 2, axis=0) + np.exp(0.5 * np.repeat(lv, 2, axis=0)) * eps.reshape(10, 2)
    pre = hidden_preactivations(params["encoder"], X) + hidden_preactivations(params["decoder"], z)
    assert min(np.abs(p).min() for p in pre) > 1e-4
    loss, grads, _ = model.loss_and_grad(X, eps, k=2, objective="iwae")
    flat = np.concatenate([g.ravel() for g in grads.values()])
    theta = model.theta
    theta0 = theta.copy()
    fd = central_differences(loss_at(model, X, eps, k=2, objective="iwae"), theta0, h=1e-7)
    theta[:] = theta0
    np.testing.assert_allclose(flat, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hidden,activation,likelihood,learn", CONFIGS + [((9, 8), "relu", "bernoulli", False)])
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_matches_numpy_reference(hidden, activation, likelihood, learn, objective):
    rng = np.random.default_rng(2)
    model = vi.VAE(7, 3, hidden=hidden, activation=activation, likelihood=likelihood, dtype=np.float64,
                   seed=5, obs_logvar=0.2, learn_obs_logvar=learn)
    X = make_data(model, 6, rng)
    eps = rng.standard_normal((6 * 3, 3))
    loss, grads, values = model.loss_and_grad(X, eps, k=3, beta=0.8, objective=objective)
    r_loss, r_grads, r_values = ref.loss_grad(reference_params(model), X, eps, k=3, beta=0.8, objective=objective,
                                              activation=activation, likelihood=likelihood, obs_logvar=0.2)
    np.testing.assert_allclose(loss, r_loss, rtol=1e-12)
    np.testing.assert_allclose(values, r_values, rtol=1e-12)
    flat = np.concatenate([g.ravel() for g in grads.values()])
    np.testing.assert_allclose(flat, ref.flatten(r_grads), rtol=1e-9, atol=1e-12)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(4)
    m64 = vi.VAE(20, 4, hidden=(16,), dtype=np.float64, seed=1)
    m32 = vi.VAE(20, 4, hidden=(16,), dtype=np.float32, seed=1)
    np.testing.assert_allclose(m32.theta, m64.theta, rtol=1e-6)  # same initialisation
    X = make_data(m64, 10, rng)
    eps = rng.standard_normal((10, 1, 4))
    l64, g64, _ = m64.loss_and_grad(X, eps)
    l32, g32, _ = m32.loss_and_grad(X, eps)
    assert abs(l32 - l64) < 1e-4 * abs(l64)
    for name in g64:
        np.testing.assert_allclose(g32[name], g64[name], atol=1e-4 * np.abs(g64[name]).max() + 1e-6)


def test_initialisation_like_torch_linear():
    model = vi.VAE(100, 5, hidden=(50,), seed=0)
    for name, w in model.weights.items():
        fan_in = model.weights[name.replace("bias", "weight")].shape[1]
        bound = 1.0 / np.sqrt(fan_in)
        assert np.abs(w).max() <= bound
        if w.size > 200:  # uniform on (-bound, bound): fills the range, mean ~ 0
            assert np.abs(w).max() > 0.95 * bound
            assert abs(w.mean()) < 0.1 * bound


# ------------------------------------------------------------------ IWAE identities


@pytest.fixture(scope="module")
def digits():
    X, _ = vi.datasets.load_digits_binarized()
    return vi.datasets.train_test_split(X, test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    Xtr, _ = digits
    return vi.VAE(64, 8, hidden=(128,), seed=0).fit(Xtr, epochs=15, progress=False)


def test_iwae_k1_equals_elbo_estimate_with_given_eps():
    """IWAE_1 = log p(x|z) + log p(z) - log q(z|x): the ELBO with a one-sample KL."""
    rng = np.random.default_rng(3)
    model = vi.VAE(9, 3, hidden=(8,), activation="tanh", dtype=np.float64, seed=2)
    X = make_data(model, 5, rng)
    eps = rng.standard_normal((5, 1, 3))
    _, _, iwae1 = model.loss_and_grad(X, eps, k=1, objective="iwae")
    mu, lv = model.encode(X)
    z = mu + np.exp(0.5 * lv) * eps[:, 0]
    logits = ref.mlp_forward(reference_params(model)["decoder"], z, "tanh")[-1]
    log_px = (X * logits - ref.softplus(logits)).sum(1)
    log_pz = -0.5 * (z**2 + np.log(2 * np.pi)).sum(1)
    log_qz = -0.5 * (eps[:, 0] ** 2 + lv + np.log(2 * np.pi)).sum(1)
    np.testing.assert_allclose(iwae1, log_px + log_pz - log_qz, rtol=1e-12)
    # With the analytic KL the ELBO differs only in the KL term.
    _, _, elbo = model.loss_and_grad(X, eps, k=1, objective="elbo")
    kl = -0.5 * (1 + lv - mu**2 - np.exp(lv)).sum(1)
    np.testing.assert_allclose(elbo, log_px - kl, rtol=1e-12)


def test_iwae_k1_matches_elbo_on_average(trained, digits):
    _, Xte = digits
    iwae1 = trained.iwae_bound(Xte, k=1, seed=1).astype(np.float64)
    elbo = trained.elbo(Xte, k=1, seed=2).astype(np.float64)
    diff = iwae1 - elbo
    # Same expectation: the difference is the Monte Carlo KL minus the analytic KL.
    assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size)


def test_iwae_bound_above_elbo_and_increasing_in_k(trained, digits):
    _, Xte = digits
    Xte = Xte[:150]
    elbo = trained.elbo(Xte, k=200, seed=0).mean()
    bounds = [trained.iwae_bound(Xte, k=k, seed=k).mean() for k in (1, 10, 100, 1000)]
    assert bounds[1] > elbo
    assert all(b2 > b1 for b1, b2 in zip(bounds, bounds[1:])), bounds
    assert abs(bounds[0] - elbo) < 1.0


def test_bound_independent_of_thread_count(trained, digits):
    _, Xte = digits
    before = vi.get_num_threads()
    try:
        vi.set_num_threads(1)
        one = trained.iwae_bound(Xte, k=300, seed=9)
        vi.set_num_threads(2)
        two = trained.iwae_bound(Xte, k=300, seed=9)
        again = trained.iwae_bound(Xte, k=300, seed=9)
    finally:
        vi.set_num_threads(before)
    # Datum i's noise comes from its own stream whatever the thread count (other noise would
    # differ by Monte Carlo error, ~1e-2 here); another thread count may round differently.
    np.testing.assert_allclose(one, two, rtol=1e-5)
    np.testing.assert_array_equal(two, again)  # the same thread count: the same bits


# ------------------------------------------------------------------ training


def test_learning_on_digits(digits):
    Xtr, Xte = digits
    model = vi.VAE(64, 8, hidden=(128,), seed=0)
    untrained = model.elbo(Xte, seed=0).mean()
    model.fit(Xtr, epochs=30, progress=False)
    trained = model.elbo(Xte, seed=0).mean()
    # Untrained about -45 nats per image; 30 epochs reach about -21.
    assert trained > untrained + 15.0, (untrained, trained)
    recon = model.reconstruct(Xte)
    mse = ((recon - Xte) ** 2).mean()
    baseline = ((Xtr.mean(axis=0) - Xte) ** 2).mean()
    assert mse < 0.7 * baseline, (mse, baseline)
    assert model.history_["loss"][-1] < model.history_["loss"][0]


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_gaussian_learned_variance_learns(digits, objective):
    X, _ = vi.datasets.load_digits_scaled()
    Xtr, Xte = vi.datasets.train_test_split(X, test_fraction=0.2, seed=1)
    model = vi.VAE(64, 6, hidden=(64,), likelihood="gaussian", learn_obs_logvar=True, seed=1)
    before = model.elbo(Xte, seed=0).mean()
    model.fit(Xtr, epochs=30, learning_rate=1e-2, progress=False, objective=objective, n_samples=3)
    after = model.elbo(Xte, seed=0).mean()
    # About -69 nats before and +9 after (a density on [0, 1]-valued pixels can exceed 1).
    assert after > before + 60.0, (before, after)
    assert model.weights["decoder.obs_logvar"].mean() < -2.0  # the variance shrank from 1


def test_fit_reproducible_and_seeded(digits):
    Xtr, _ = digits
    a = vi.VAE(64, 4, hidden=(32,), seed=3).fit(Xtr, epochs=2, progress=False)
    b = vi.VAE(64, 4, hidden=(32,), seed=3).fit(Xtr, epochs=2, progress=False)
    c = vi.VAE(64, 4, hidden=(32,), seed=4).fit(Xtr, epochs=2, progress=False)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.allclose(a.theta, c.theta)


def test_two_threads_match_one_thread(digits):
    """The data-parallel step (gradient reduction, split Adam update) equals the serial one."""
    Xtr, _ = digits
    before = vi.get_num_threads()
    thetas, threads = [], []
    try:
        for n in (1, 2, 2):
            vi.set_num_threads(n)
            m = vi.VAE(64, 8, hidden=(256, 256), dtype=np.float64, seed=5).fit(Xtr, epochs=1, progress=False)
            thetas.append(m.theta.copy())
            threads.append(m.threads_)
    finally:
        vi.set_num_threads(before)
    assert threads == [1, 2, 2]
    np.testing.assert_allclose(thetas[0], thetas[1], rtol=1e-9, atol=1e-12)
    # Threads claim the work dynamically, yet a thread count gives the same bits every run.
    np.testing.assert_array_equal(thetas[1], thetas[2])


def test_first_full_batch_step_is_adam(digits):
    """Adam's first step moves every parameter by lr * g / (|g| + eps) ~ lr."""
    Xtr, _ = digits
    model = vi.VAE(64, 4, hidden=(16,), dtype=np.float64, seed=2)
    theta0 = model.theta.copy()
    model.fit(Xtr, epochs=1, batch_size=Xtr.shape[0], learning_rate=1e-3, progress=False)
    step = np.abs(model.theta - theta0)
    assert step.max() <= 1e-3 * (1 + 1e-9)
    assert np.median(step) > 0.99e-3


def test_adam_binding_matches_reference():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(50)
    arrays = [theta.copy()]
    adam = core.testing.AdamF64(50, learning_rate=0.01)
    r_adam = ref.Adam(arrays, lr=0.01)
    for _ in range(5):
        g = rng.standard_normal(50)
        adam.step(theta, g)
        r_adam.step([g])
    np.testing.assert_allclose(theta, arrays[0], rtol=1e-13)
    assert adam.t == 5


def test_callback_stops_and_sees_info(digits):
    Xtr, Xte = digits
    seen = []

    def callback(model, info):
        seen.append(info)
        return info["epoch"] == 2

    model = vi.VAE(64, 4, hidden=(32,), seed=0)
    model.fit(Xtr, epochs=10, validation_data=Xte, callback=callback, progress=False, steps_per_callback=3)
    assert [i["epoch"] for i in seen] == [1, 2]
    assert seen[1]["step"] == 2 * int(np.ceil(Xtr.shape[0] / 128))
    assert all(np.isfinite(i["val_elbo"]) for i in seen)
    assert len(model.history_["loss"]) == 2


def test_early_stopping_restores_best(digits):
    Xtr, Xte = digits
    model = vi.VAE(64, 8, hidden=(128,), seed=0)
    model.fit(Xtr, epochs=40, learning_rate=0.03, validation_data=Xte, patience=2, progress=False)
    history = model.history_["val_elbo"]
    assert len(history) < 40
    best = max(history)
    # fit's validation ELBO uses a fixed seed: recompute it on the restored weights.
    from varinf.models.vae import _seed_from

    restored = model._core.bound(Xte, 1, "elbo", _seed_from(model.seed, 4)).mean()
    assert restored == pytest.approx(best, rel=1e-6)


def test_progress_output(digits, capsys):
    Xtr, _ = digits
    model = vi.VAE(64, 2, hidden=(8,), seed=0)
    model.fit(Xtr, epochs=1, progress=False)
    assert capsys.readouterr().err == ""
    model.fit(Xtr, epochs=2, progress=True)  # tqdm when installed, plain lines otherwise
    assert "epoch 2/2 loss" in capsys.readouterr().err


def test_beta_and_warmup(digits):
    """A warm-up over very many epochs keeps beta ~ 0: like beta = 0, unlike beta = 1."""
    Xtr, _ = digits

    def train(**kw):
        return vi.VAE(64, 4, hidden=(16,), dtype=np.float64, seed=1).fit(Xtr, epochs=2, progress=False, **kw).theta

    zero, one = train(beta=0.0), train(beta=1.0)
    warm = train(beta=1.0, warmup_epochs=1e9)
    np.testing.assert_allclose(warm, zero, rtol=1e-5, atol=1e-8)
    assert np.abs(warm - one).max() > 1e-4
    # A warm-up of a fraction of the run ends at the full beta: different from both.
    half = train(beta=1.0, warmup_epochs=1.0)
    assert np.abs(half - one).max() > 1e-6 and np.abs(half - zero).max() > 1e-6


# ------------------------------------------------------------------ API


def test_shapes_and_ranges(trained, digits):
    _, Xte = digits
    mu, lv = trained.encode(Xte[:7])
    assert mu.shape == lv.shape == (7, 8) and mu.dtype == np.float32
    probs = trained.decode(mu)
    assert probs.shape == (7, 64) and probs.min() >= 0 and probs.max() <= 1
    np.testing.assert_allclose(trained.reconstruct(Xte[:7]), probs, rtol=1e-6)
    draws = trained.sample(5, seed=0, mean=False)
    assert draws.shape == (5, 64) and set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_array_equal(trained.sample(4, seed=1), trained.sample(4, seed=1))
    assert trained.elbo(Xte[:3]).shape == (3,)


def test_decode_is_sigmoid_of_reference_logits():
    model = vi.VAE(10, 3, hidden=(6, 5), activation="softplus", dtype=np.float64, seed=0)
    Z = np.random.default_rng(0).standard_normal((4, 3))
    logits = ref.mlp_forward(reference_params(model)["decoder"], Z, "softplus")[-1]
    np.testing.assert_allclose(model.decode(Z), ref.sigmoid(logits), rtol=1e-12)
    mu, lv = model.encode(np.full((2, 10), 0.5))
    head = ref.mlp_forward(reference_params(model)["encoder"], np.full((2, 10), 0.5), "softplus")[-1]
    np.testing.assert_allclose(np.hstack([mu, lv]), head, rtol=1e-12)


def test_weights_are_views_named_like_torch():
    model = vi.VAE(12, 3, hidden=(10, 9), likelihood="gaussian", learn_obs_logvar=True, seed=0)
    w = model.weights
    assert w["encoder.0.weight"].shape == (10, 12)
    assert w["encoder.2.weight"].shape == (6, 9)
    assert w["decoder.0.weight"].shape == (9, 3)
    assert w["decoder.2.bias"].shape == (12,)
    assert w["decoder.obs_logvar"].shape == (12,)
    assert sum(v.size for v in w.values()) == model.theta.size
    w["decoder.0.bias"][:] = 7.0
    assert np.all(model.weights["decoder.0.bias"] == 7.0)
    model.set_weights({"encoder.0.bias": np.zeros(10)})
    assert np.all(model.weights["encoder.0.bias"] == 0.0)


def test_non_contiguous_and_other_dtypes_accepted(trained, digits):
    _, Xte = digits
    # Every layout and dtype reaches the core as the same C-contiguous float32 [20, 64] batch:
    # the same computation, so the same bits.
    ref_values = trained.elbo(Xte[:20], seed=3)
    np.testing.assert_array_equal(trained.elbo(np.asfortranarray(Xte[:20]), seed=3), ref_values)
    np.testing.assert_array_equal(trained.elbo(Xte[:20].astype(np.float64), seed=3), ref_values)
    np.testing.assert_array_equal(trained.elbo(Xte[:20].astype(bool), seed=3), ref_values)
    strided = Xte[:40:2]
    np.testing.assert_array_equal(trained.elbo(strided, seed=3), trained.elbo(strided.copy(), seed=3))
    # Datum 0 in a batch of 20 rows and alone: the same noise, but Eigen's GEMM may take
    # another kernel path for another row count, so equal to float32 rounding only.
    np.testing.assert_allclose(trained.elbo(strided, seed=3)[:1], trained.elbo(Xte[:1], seed=3), rtol=1e-5)


def test_bound_of_an_overflowing_posterior_is_minus_inf_not_nan():
    """X = 15668 drives this encoder's log variance to ~1419.6: exp(lv / 2) overflows float64, so
    z and the decoder's output are not finite, yet both bounds are -inf (see scale_overflows)."""
    model = vi.VAE(3, 2, hidden=(4,), likelihood="gaussian", dtype=np.float64, seed=0)
    X = np.array([[0.0, 15668.0, 0.0], [0.0, 0.5, 0.0]])
    assert model.encode(X)[1][0].max() > 2 * np.log(np.finfo(np.float64).max)
    for bound in (model.elbo(X), model.iwae_bound(X, k=3)):
        assert bound[0] == -np.inf and np.isfinite(bound[1])


def test_no_copy_of_contiguous_input():
    model = vi.VAE(4, 2, hidden=(3,), dtype=np.float64, seed=0)
    X = np.full((3, 4), 0.5)
    assert model._check_X(X) is X


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"input_dim": 0}, "input_dim"),
        ({"hidden": (0,)}, "hidden"),
        ({"hidden": (5, -1)}, "hidden"),
        ({"decoder_hidden": (0,)}, "decoder_hidden"),
        ({"activation": "sigmoid"}, "activation"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"dtype": np.int32}, "dtype"),
    ],
)
def test_bad_constructor_arguments(kwargs, name):
    args = {"input_dim": 4, "latent_dim": 2, "hidden": (3,)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        vi.VAE(**args)


def test_bad_data():
    model = vi.VAE(4, 2, hidden=(3,), seed=0)
    good = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match="input_dim"):
        model.fit(np.zeros((3, 5)), epochs=1, progress=False)
    with pytest.raises(ValueError, match="X"):
        model.elbo(np.zeros(4))
    bad = good.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad, progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.elbo(good + 1.0)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(good, epochs=1, validation_data=np.zeros((2, 3)), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(good, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit(good, learning_rate=-1.0, progress=False)
    with pytest.raises(ValueError, match="objective"):
        model.fit(good, objective="cubo", progress=False)
    with pytest.raises(ValueError, match="beta"):
        model.fit(good, beta=-1.0, progress=False)
    with pytest.raises(ValueError, match="patience"):
        model.fit(good, patience=2, progress=False)
    with pytest.raises(ValueError, match="Z"):
        model.decode(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="eps"):
        model.loss_and_grad(good, np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="k"):
        model.iwae_bound(good, k=0)
    # Gaussian data may lie outside [0, 1].
    vi.VAE(4, 2, hidden=(3,), likelihood="gaussian", seed=0).elbo(good + 1.0)


def test_batch_size_larger_than_the_data():
    model = vi.VAE(4, 2, hidden=(3,), seed=0)
    X = np.full((3, 4), 0.5)
    with pytest.raises(ValueError, match=r"batch_size must be at most the number of rows of X \(3\), got 4"):
        model.fit(X, batch_size=4, progress=False)
    model.fit(X, batch_size=3, epochs=1, progress=False)
    model.fit(X, epochs=1, progress=False)  # the default batch size: min(rows, 128)


@pytest.mark.parametrize("kwargs", [{"input_dim": 2**62, "latent_dim": 1, "hidden": ()},
                                    {"input_dim": 4, "latent_dim": 2**62, "hidden": ()},
                                    {"input_dim": 4, "latent_dim": 2, "hidden": (2**16, 2**16)},
                                    {"input_dim": 4, "latent_dim": 2, "decoder_hidden": (2**70,)},
                                    {"input_dim": 2**31, "latent_dim": 1, "hidden": ()}])
def test_too_many_parameters_refused_before_allocating(kwargs):
    with pytest.raises(ValueError, match=r"input_dim, latent_dim, hidden and decoder_hidden.*at most 2\*\*31"):
        vi.VAE(**kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_set_weights_value_must_fit_the_dtype(dtype):
    model = vi.VAE(3, 2, hidden=(4,), dtype=dtype, seed=0)
    if dtype == np.float32:
        before = model.theta.copy()
        with pytest.raises(ValueError, match=r"weight 'encoder.0.bias'.*float32"):
            model.set_weights({"encoder.0.bias": np.array([1.0, 1e300, 0.0, 0.0])})
        np.testing.assert_array_equal(model.theta, before)
    else:
        model.set_weights({"encoder.0.bias": np.array([1.0, 1e300, 0.0, 0.0])})
        assert model.weights["encoder.0.bias"][1] == 1e300


@pytest.mark.parametrize("seed", [-1, 1.5, True, np.float64(2.0), "3", np.int64(-4)])
def test_bad_seed_named_everywhere(seed):
    with pytest.raises(ValueError, match="seed"):
        vi.VAE(4, 2, hidden=(3,), seed=seed)
    model = vi.VAE(4, 2, hidden=(3,), seed=0)
    X = np.full((3, 4), 0.5)
    for call in (lambda: model.elbo(X, seed=seed), lambda: model.iwae_bound(X, k=2, seed=seed),
                 lambda: model.sample(2, seed=seed), lambda: model.fit(X, epochs=1, progress=False, seed=seed)):
        with pytest.raises(ValueError, match="seed"):
            call()


def test_numpy_integer_seed_is_the_int():
    a = vi.VAE(4, 2, hidden=(3,), seed=np.int64(7))
    b = vi.VAE(4, 2, hidden=(3,), seed=7)
    assert a.seed == 7 and type(a.seed) is int
    np.testing.assert_array_equal(a.theta, b.theta)
    X = np.full((3, 4), 0.5)
    np.testing.assert_array_equal(a.elbo(X, seed=np.uint8(2)), a.elbo(X, seed=2))


# ------------------------------------------------------------------ PyTorch equivalence


def torch_vae(model, torch):
    """A PyTorch VAE with the model's architecture and weights (float32)."""
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "softplus": torch.nn.Softplus}[model.activation]

    def mlp(sizes):
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i + 2 < len(sizes):
                layers.append(act())
        return torch.nn.Sequential(*layers)

    J = model.latent_dim
    enc = mlp([model.input_dim, *model.hidden, 2 * J])
    dec = mlp([J, *model.decoder_hidden, model.input_dim])
    linears = [m for m in enc if isinstance(m, torch.nn.Linear)] + [m for m in dec if isinstance(m, torch.nn.Linear)]
    names = [f"encoder.{i}" for i in range(len(model.hidden) + 1)] + [
        f"decoder.{i}" for i in range(len(model.decoder_hidden) + 1)]
    with torch.no_grad():
        for lin, name in zip(linears, names):
            lin.weight.copy_(torch.from_numpy(model.weights[name + ".weight"].copy()))
            lin.bias.copy_(torch.from_numpy(model.weights[name + ".bias"].copy()))
    return enc, dec, linears, names


def test_same_loss_gradients_and_adam_step_as_pytorch():
    torch = import_peer("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    model = vi.VAE(30, 5, hidden=(24, 16), activation="relu", dtype=np.float32, seed=1)
    X = (rng.uniform(size=(32, 30)) > 0.5).astype(np.float32)
    eps = rng.standard_normal((32, 5)).astype(np.float32)
    enc, dec, linears, names = torch_vae(model, torch)
    params = [p for lin in linears for p in (lin.weight, lin.bias)]
    opt = torch.optim.Adam(params, lr=1e-3)

    # Kingma & Welling's loss as in PyTorch's examples/vae, averaged over the batch.
    xt, et = torch.from_numpy(X), torch.from_numpy(eps)
    mu, logvar = enc(xt).chunk(2, dim=1)
    z = mu + torch.exp(0.5 * logvar) * et
    logits = dec(z)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, xt, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    t_loss = (bce + kld) / X.shape[0]
    opt.zero_grad()
    t_loss.backward()

    loss, grads, _ = model.loss_and_grad(X, eps)
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    for lin, name in zip(linears, names):
        for part, tp in (("weight", lin.weight), ("bias", lin.bias)):
            tg = tp.grad.numpy()
            np.testing.assert_allclose(grads[f"{name}.{part}"], tg, rtol=1e-4, atol=1e-5 * np.abs(tg).max())

    # One Adam step from the same gradients (PyTorch's rule in both).
    t_grads = np.concatenate([p.grad.numpy().ravel() for p in params])
    opt.step()
    theta = model.theta
    adam = core.testing.AdamF32(theta.size, learning_rate=1e-3)
    adam.step(theta, np.ascontiguousarray(t_grads))
    t_theta = np.concatenate([p.detach().numpy().ravel() for p in params])
    np.testing.assert_allclose(theta, t_theta, rtol=0, atol=1e-6)
    # Our own gradients give the same step wherever |g| is not tiny (Adam's first step is
    # lr * g / (|g| + eps), sensitive to float rounding only when g ~ eps).
    flat = np.concatenate([g.ravel() for g in grads.values()])
    fresh = vi.VAE(30, 5, hidden=(24, 16), dtype=np.float32, seed=1)
    core.testing.AdamF32(theta.size, learning_rate=1e-3).step(fresh.theta, np.ascontiguousarray(flat))
    big = np.abs(t_grads) > 1e-5
    np.testing.assert_allclose(fresh.theta[big], t_theta[big], rtol=0, atol=1e-6)


def test_same_iwae_loss_and_gradients_as_pytorch():
    """The K-sample IWAE objective (Burda et al. 2015, eq. 8) written in PyTorch's autograd."""
    torch = import_peer("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    model = vi.VAE(20, 4, hidden=(16,), activation="tanh", dtype=np.float32, seed=2)
    B, k = 12, 5
    X = (rng.uniform(size=(B, 20)) > 0.5).astype(np.float32)
    eps = rng.standard_normal((B, k, 4)).astype(np.float32)
    enc, dec, linears, names = torch_vae(model, torch)
    xt, et = torch.from_numpy(X), torch.from_numpy(eps)
    mu, logvar = enc(xt).chunk(2, dim=1)  # [B, J] each
    z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * et  # [B, k, J]
    logits = dec(z)  # [B, k, D]
    log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, xt[:, None].expand_as(logits), reduction="none").sum(-1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(mu[:, None], torch.exp(0.5 * logvar)[:, None]).log_prob(z).sum(-1)
    bound = torch.logsumexp(log_px + log_pz - log_qz, dim=1) - np.log(k)
    t_loss = -bound.mean()
    t_loss.backward()
    loss, grads, values = model.loss_and_grad(X, eps, k=k, objective="iwae")
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    np.testing.assert_allclose(values, bound.detach().numpy(), rtol=1e-5, atol=1e-4)
    for lin, name in zip(linears, names):
        for part, tp in (("weight", lin.weight), ("bias", lin.bias)):
            tg = tp.grad.numpy()
            np.testing.assert_allclose(grads[f"{name}.{part}"], tg, rtol=1e-4, atol=1e-5 * np.abs(tg).max())
