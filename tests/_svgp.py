"""The C++ SVGP's arguments (varinf._core sparse.SVGPArgs) built from plain arrays, for the tests
that call the core directly (finite differences, the numpy reference)."""

import numpy as np

from varinf._loader import core


def svgp_args(groups, likelihood, lik_theta, q_mu, q_sqrt, whiten, q_diag, mean=None, W=None, num_data=400.0,
              jitter=1e-6, single=False):
    """SVGPArgs for ``groups`` [(kernel, theta, Z [m, d], first, count)], q_mu [m, L], q_sqrt
    [L, m, m] (or [m, L] when q_diag), mean [L] or None, W [P, L] or None; ``likelihood`` a
    varinf.likelihoods.Likelihood (its view for the model's outputs is taken here); the batch
    products in float32 when ``single``."""
    q_mu = np.ascontiguousarray(q_mu, dtype=float)
    outputs = q_mu.shape[1] if W is None else np.shape(W)[0]
    return core.sparse.SVGPArgs(
        [(k.core(), np.asarray(theta, dtype=float), np.ascontiguousarray(Z, dtype=float), first, count)
         for k, theta, Z, first, count in groups],
        likelihood.latent_core(outputs), np.asarray(lik_theta, dtype=float), q_mu,
        np.ascontiguousarray(q_sqrt, dtype=float),
        np.zeros((0, 0)) if W is None else np.ascontiguousarray(W, dtype=float),
        whiten, q_diag, np.zeros(0) if mean is None else np.atleast_1d(np.asarray(mean, dtype=float)),
        float(num_data), jitter, single)


def single_args(kernel, theta, likelihood, lik_theta, Z, q_mu, q_sqrt, whiten, q_diag, mean, num_data=400.0,
                jitter=1e-6):
    """SVGPArgs of one latent GP: q_mu [m], q_sqrt [m, m] (or [m] when q_diag), mean a number."""
    q_sqrt = np.asarray(q_sqrt)[:, None] if q_diag else np.asarray(q_sqrt)[None]
    return svgp_args([(kernel, theta, Z, 0, 1)], likelihood, lik_theta, np.asarray(q_mu)[:, None], q_sqrt,
                     whiten, q_diag, mean, num_data=num_data, jitter=jitter)
