"""varinf's models."""

from .gpr import GPR
from .sgpr import SGPR

__all__ = ["GPR", "SGPR"]
