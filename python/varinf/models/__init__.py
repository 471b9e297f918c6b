"""varinf's models."""

from .gpr import GPR
from .sgpr import SGPR
from .svgp import SVGP

__all__ = ["GPR", "SGPR", "SVGP"]
