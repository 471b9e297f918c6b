"""Pure-numpy reference implementations of varinf's computations (oracles and baselines)."""

from . import vae

__all__ = ["vae"]
