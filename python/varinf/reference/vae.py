"""Pure-numpy VAE: the readable reference of varinf's C++ ELBO / IWAE forward and backward.

Kingma & Welling (2013), Burda, Grosse & Salakhutdinov (2015); docs/math.md section 8. Used by the
tests as an independent oracle and by ``bench/bench_vae.py`` as the numpy baseline. Same
conventions as the C++ core: Dense layers ``y = act(x W^T + b)`` with ``W`` [out, in]; the
encoder ends in 2J outputs ``[mu, logvar]``; rows of ``eps`` are datum-major (row ``i k + s`` is
datum ``i``, sample ``s``); the loss is ``-mean_i L_i``.

``params`` is a dict: ``{"encoder": [(W, b), ...], "decoder": [(W, b), ...],
"obs_logvar": [D] array or None}``.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


def softplus(a):
    """log(1 + exp(a)) = max(a, 0) + log1p(exp(-|a|)), stable for any a."""
    return np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a)))


def sigmoid(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _act(name, z):
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    return softplus(z)


def _act_grad(name, a):
    """act'(z) written with a = act(z)."""
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name == "tanh":
        return 1.0 - a * a
    return -np.expm1(-a)  # sigmoid(z) = 1 - exp(-softplus(z))


def init_params(sizes_enc, sizes_dec, rng, dtype=np.float64, obs_logvar=None):
    """torch.nn.Linear's initialisation: W, b ~ U(-1/sqrt(in), 1/sqrt(in)).

    sizes_enc: [D, h..., 2J]; sizes_dec: [J, h..., D]; obs_logvar: learned log variance init
    (a float) or None.
    """

    def mlp(sizes):
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / np.sqrt(n_in)
            W = rng.uniform(-bound, bound, size=(n_out, n_in)).astype(dtype)  # [out, in]
            b = rng.uniform(-bound, bound, size=n_out).astype(dtype)  # [out]
            layers.append((W, b))
        return layers

    lv = None if obs_logvar is None else np.full(sizes_dec[-1], obs_logvar, dtype=dtype)
    return {"encoder": mlp(sizes_enc), "decoder": mlp(sizes_dec), "obs_logvar": lv}


def mlp_forward(layers, x, activation):
    """Activations of every layer (the last one linear). x [N, in]."""
    acts = []
    h = x
    for idx, (W, b) in enumerate(layers):
        h = h @ W.T + b  # [N, out]
        if idx + 1 < len(layers):
            h = _act(activation, h)
        acts.append(h)
    return acts


def mlp_backward(layers, x, acts, dout, activation, need_input_grad=False):
    """Gradients [(dW, db), ...] for dout = dL/d(last output); and dL/dx when asked."""
    grads = [None] * len(layers)
    delta = dout  # [N, out]
    for idx in range(len(layers) - 1, -1, -1):
        W, _ = layers[idx]
        inp = x if idx == 0 else acts[idx - 1]
        if idx + 1 < len(layers):
            delta = delta * _act_grad(activation, acts[idx])
        grads[idx] = (delta.T @ inp, delta.sum(axis=0))
        if idx > 0 or need_input_grad:
            delta = delta @ W  # [N, in]
    return grads, (delta if need_input_grad else None)


def log_likelihood(x, out, likelihood, lv):
    """log p(x | out) per row and d/d out. x, out [N, D]; lv [D] or a scalar (Gaussian)."""
    if likelihood == "bernoulli":
        ll = (x * out - softplus(out)).sum(axis=1)
        return ll, x - sigmoid(out)
    inv_var = np.exp(-lv)
    diff = x - out
    D = x.shape[1]
    ll = -0.5 * (D * LOG_2PI + np.sum(lv * np.ones(D)) + (diff * diff * inv_var).sum(axis=1))
    return ll, diff * inv_var


def loss_grad(params, X, eps, k=1, beta=1.0, objective="elbo", activation="relu",
              likelihood="bernoulli", obs_logvar=0.0):
    """Minibatch loss ``-mean_i L_i``, its gradients (same structure as params) and ``L_i``.

    X [B, D], eps [B k, J]. ELBO: L_i = mean_s log p(x_i|z_is) - beta KL_i (analytic KL).
    IWAE: L_i = logsumexp_s(lw_is) - log k, lw = log p(x|z) + beta (log p(z) - log q(z|x)).
    obs_logvar: the fixed Gaussian log variance, used when params["obs_logvar"] is None.
    """
    B = X.shape[0]
    enc = mlp_forward(params["encoder"], X, activation)
    head = enc[-1]  # [B, 2J]
    J = head.shape[1] // 2
    mu, lv = head[:, :J], head[:, J:]  # [B, J] each
    mu_r = np.repeat(mu, k, axis=0)  # [B k, J]
    lv_r = np.repeat(lv, k, axis=0)
    std_r = np.exp(0.5 * lv_r)
    z = mu_r + std_r * eps  # reparametrisation, Kingma & Welling eq. 10
    dec = mlp_forward(params["decoder"], z, activation)
    out = dec[-1]  # [B k, D]
    x_r = np.repeat(X, k, axis=0)
    learned = params.get("obs_logvar") is not None
    lvx = params["obs_logvar"] if learned else obs_logvar
    ll, dll = log_likelihood(x_r, out, likelihood, lvx)  # [B k], [B k, D]
    ll_m = ll.reshape(B, k)
    if objective == "elbo":
        kl = -0.5 * np.sum(1.0 + lv - mu * mu - np.exp(lv), axis=1)  # [B]
        values = ll_m.mean(axis=1) - beta * kl
        c = np.full(B * k, 1.0 / k)
    else:
        log_ratio = 0.5 * np.sum(lv_r + eps * eps - z * z, axis=1)  # log p(z) - log q(z|x)
        lw = (ll + beta * log_ratio).reshape(B, k)
        mx = lw.max(axis=1, keepdims=True)
        w = np.exp(lw - mx)
        values = (mx[:, 0] + np.log(w.sum(axis=1))) - np.log(k)
        c = (w / w.sum(axis=1, keepdims=True)).reshape(-1)
    c = -c / B  # d loss / d ll_r
    loss = -values.mean()
    grads = {"obs_logvar": None}
    if learned:
        # d ll / d lv_d = -1/2 + 1/2 (x - m)^2 exp(-lv)
        diff = x_r - out
        grads["obs_logvar"] = (c[:, None] * (-0.5 + 0.5 * diff * diff * np.exp(-lvx))).sum(axis=0)
    dout = dll * c[:, None]
    grads["decoder"], dz = mlp_backward(params["decoder"], z, dec, dout, activation, True)
    if objective == "iwae":
        dz = dz - beta * c[:, None] * z
    dmu = dz.reshape(B, k, J).sum(axis=1)
    dlv = (0.5 * dz * (z - mu_r)).reshape(B, k, J).sum(axis=1)
    if objective == "elbo":
        dmu = dmu + beta * mu / B
        dlv = dlv + beta * 0.5 * (np.exp(lv) - 1.0) / B
    else:
        dlv = dlv - 0.5 * beta / B
    grads["encoder"], _ = mlp_backward(params["encoder"], X, enc, np.hstack([dmu, dlv]), activation)
    return loss, grads, values


def flatten(tree):
    """The arrays of a params/grads dict in varinf's theta order, as one vector."""
    parts = [a.ravel() for layer in tree["encoder"] + tree["decoder"] for a in layer]
    if tree.get("obs_logvar") is not None:
        parts.append(tree["obs_logvar"].ravel())
    return np.concatenate(parts)


class Adam:
    """torch.optim.Adam's rule on a list of arrays (updated in place)."""

    def __init__(self, arrays, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.arrays = arrays
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [np.zeros_like(a) for a in arrays]
        self.v = [np.zeros_like(a) for a in arrays]
        self.t = 0

    def step(self, grads):
        self.t += 1
        step_size = self.lr / (1.0 - self.b1**self.t)
        bc2_sqrt = np.sqrt(1.0 - self.b2**self.t)
        for a, g, m, v in zip(self.arrays, grads, self.m, self.v):
            m += (1.0 - self.b1) * (g - m)
            v *= self.b2
            v += (1.0 - self.b2) * g * g
            a -= step_size * m / (np.sqrt(v) / bc2_sqrt + self.eps)


def param_list(tree):
    out = [a for layer in tree["encoder"] + tree["decoder"] for a in layer]
    if tree.get("obs_logvar") is not None:
        out.append(tree["obs_logvar"])
    return out


def train_epoch(params, adam, X, batch_size, rng, activation="relu", likelihood="bernoulli"):
    """One epoch of shuffled minibatches with Adam; returns the mean minibatch loss."""
    n = X.shape[0]
    J = params["encoder"][-1][0].shape[0] // 2
    order = rng.permutation(n)
    losses = []
    for start in range(0, n, batch_size):
        xb = X[order[start:start + batch_size]]
        eps = rng.standard_normal((xb.shape[0], J)).astype(X.dtype)
        loss, grads, _ = loss_grad(params, xb, eps, activation=activation, likelihood=likelihood)
        adam.step(param_list(grads))
        losses.append(loss)
    return float(np.mean(losses))
