"""Exceptions raised by varinf."""

import numpy as np

__all__ = ["FormatError", "LinAlgError"]


class LinAlgError(np.linalg.LinAlgError):
    """A numerical failure (a matrix that is not positive definite even after jitter).

    The message names the matrix and suggests a fix: more noise, fewer or de-duplicated
    inducing points, or rescaled inputs.
    """


class FormatError(ValueError):
    """A file is not a valid varinf file (corrupt, truncated, foreign or from a newer varinf)."""
