"""Numerical constants that several modules share (imported downwards, never from a model)."""

__all__ = ["NOISE_LOWER", "KUU_JITTER", "KUU_JITTER_FLOAT32"]

# Lower bound of a Gaussian noise variance and of a likelihood's scale (docs/math.md section 2.1;
# GPflow's default).
NOISE_LOWER = 1e-6

# Jitter added to the diagonal of K(Z, Z) by SGPR, FITC and SVGP (docs/math.md section 3.2;
# GPflow's default).
KUU_JITTER = 1e-6

# The same for an SVGP whose batch products run in float32 (dtype=np.float32; docs/math.md
# section 7.14): GPyTorch's variational_cholesky_jitter for float, 100 times its double value.
KUU_JITTER_FLOAT32 = 1e-4
