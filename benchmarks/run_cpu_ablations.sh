#!/usr/bin/env bash
# The CPU ablations of benchmarks/NOTES.md, one after the other (2 shared cores: run nothing else).
# Usage: bash benchmarks/run_cpu_ablations.sh   (from the repository root; writes benchmarks/results/)
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results
COMMON="--models vit_p_1gf,convit_ti --image_size 112 --batch_size 16 --steps 3 --repeats 3 --warmup 1"
run() { name=$1; shift; echo "== $name: $*"; $PY -m vit_jax_stems.bench $COMMON "$@" --json $OUT/cpu_ablation_$name.json > $OUT/cpu_ablation_$name.txt 2>&1; tail -n 20 $OUT/cpu_ablation_$name.txt; }
run base
run no_donate --no_donate
run bf16 --dtype bfloat16
run remat_block --remat block
run remat_block_dots --remat block_dots
