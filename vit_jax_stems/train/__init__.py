"""Training and evaluation: trainer, optimizer and schedules, EMA, sharding, checkpoints, metrics.

Read `trainer.py` top to bottom to follow one run; the other modules are the pieces it uses.
"""
