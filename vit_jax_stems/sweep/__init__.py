"""Hyperparameter sweeps: random search over trials, grouped (vmapped) or sequential training."""
