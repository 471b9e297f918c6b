"""Exceptions raised by varinf."""

import numpy as np

__all__ = ["LinAlgError"]


class LinAlgError(np.linalg.LinAlgError):
    """A numerical failure (a matrix that is not positive definite even after jitter).

    The message names the matrix and suggests a fix: more noise, fewer or de-duplicated
    inducing points, or rescaled inputs.
    """
