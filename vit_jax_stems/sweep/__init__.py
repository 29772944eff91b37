"""Hyperparameter sweeps and sample-efficiency grids over the trainer (P1 Fig. 3-4, P2 Table 2)."""
