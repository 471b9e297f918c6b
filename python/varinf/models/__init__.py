"""varinf's models."""

from .gpr import GPR

__all__ = ["GPR"]
