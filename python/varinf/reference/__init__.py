"""Pure-numpy implementations of varinf's computations: readable oracles for the tests and
baselines for the benchmarks (never used by the models)."""
