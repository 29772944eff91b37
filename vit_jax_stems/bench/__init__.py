"""Throughput, MFU, compile time and memory of the zoo, against PyTorch/timm peers.

`python -m vit_jax_stems.bench --help`; figures and commands in benchmarks/NOTES.md.

Layout: `cases` (what is measured: a model, its equal-GF patchify twin, its plain-attention
twin, its timm peer), `jax_bench` (the jitted train and inference steps and their timing),
`gpsa_paths` (fast vs explicit GPSA outputs), `timm_peer` (the PyTorch side, run in a
subprocess), `report` (table, ratios, JSON). Device peaks and the MFU arithmetic are
`vit_jax_stems.mfu`, shared with the trainer. Beside the model benchmark: `gpu_check` (every
accelerator figure in one command, benchmarks/gpu_check.sh) and `host_overhead` (the training
loop's own cost per step).
Importing this package never imports torch or tensorflow.
"""
