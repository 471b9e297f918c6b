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


def check_model_gradient(model, *data, h=1e-5, rtol=1e-6):
    """Fails unless ``model.elbo(*data, return_grad=True)``'s gradient is that of the ELBO with
    respect to the unconstrained values of ``model.parameters`` (each shared one once); ``data``
    is a batch (X, y) for SVGP, nothing for models that own their data (SGPR)."""
    from varinf.parameters import ParameterVector

    params = ParameterVector(model.parameters)
    x0 = params.get()
    _, grad = model.elbo(*data, return_grad=True)

    def f(x):
        params.set(x)
        return model.elbo(*data)

    fd = central_differences(f, x0, h=h)
    params.set(x0)
    np.testing.assert_allclose(grad, fd, rtol=rtol, atol=1e-6 * np.abs(fd).max())
