"""varinf's models."""

from .gpr import GPR
from .vae import VAE

__all__ = ["GPR", "VAE"]
