"""Hyperparameter sweeps as P1 runs them (random search, EDFs), trial groups and their reports."""
