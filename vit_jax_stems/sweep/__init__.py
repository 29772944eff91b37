"""Hyperparameter sweeps as P1 runs them (random search, EDFs), trial groups, their reports, and
sample-efficiency grids (P2 Table 2).

`python -m vit_jax_stems.sweep` (or `main.py --mode sweep`; flags in cli.py) samples trials from
a search space (space.py) into a trial list (trials.py) and trains them group by group
(runner.py): each trial alone with the trainer, or each group as one vmapped program
(grouped.py), writing DIR/trials.jsonl; report.py draws their EDFs.
`python -m vit_jax_stems.sweep.sample_efficiency` trains on class-balanced subsets.
"""
