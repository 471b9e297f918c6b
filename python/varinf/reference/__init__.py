"""Pure-numpy reference implementations of varinf's computations.

Readable code that mirrors the equations of docs/math.md line by line; it is the baseline of the
benchmarks (bench/) and an independent oracle for the tests. Nothing here calls varinf's
compiled core.
"""

from . import gpr, kernels, sparse, vae  # noqa: F401

__all__ = ["gpr", "kernels", "sparse", "vae"]
