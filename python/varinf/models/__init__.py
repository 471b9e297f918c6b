"""varinf's models."""

from .gpr import GPR
from .sgpr import FITC, SGPR
from .svgp import SVGP
from .vae import VAE

__all__ = ["GPR", "SGPR", "FITC", "SVGP", "VAE"]
