"""varinf's models."""

from .gpr import GPR
from .sgpr import FITC, SGPR
from .svgp import SVGP

__all__ = ["GPR", "SGPR", "FITC", "SVGP"]
