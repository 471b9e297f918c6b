"""Central finite differences in float64: the one check every hand-written gradient gets."""

import numpy as np


def central_differences(f, x, h=1e-6):
    """d f / d x [x.shape] by central differences; ``f`` maps an array shaped like ``x`` to a
    number."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


def check_grad(f, x, grad, h=1e-6, rtol=1e-6, atol=1e-7):
    """Fails unless ``grad`` is the gradient of ``f`` at ``x`` by central differences."""
    np.testing.assert_allclose(grad, central_differences(f, x, h), rtol=rtol, atol=atol)
