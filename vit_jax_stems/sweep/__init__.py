"""Hyperparameter sweeps: random search as P1 does it, trial groups, results for EDFs."""
