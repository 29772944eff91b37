#!/usr/bin/env bash
# Every accelerator figure of benchmarks/NOTES.md in one go, within 8 minutes on one H100/H200:
# the model table with timm peers, twins and the GPSA study, cuDNN against XLA attention,
# scanned against unrolled blocks and the K-trials table. Parts, limits and output:
# vit_jax_stems/bench/gpu_check.py. Writes benchmarks/results/gpu_check_<date>_<device>/
# (gpu_check.json, gpu_check.md, parts/) and prints each part's seconds against the budget.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --parts sweep   # rerun parts into the same folder
#   bash benchmarks/gpu_check.sh --dry           # (or DRY_RUN=1) the same parts on CPU, tiny
#
# Needs what a GPU image has: jax, flax, optax, orbax-checkpoint (absl-py, etils, PyYAML come
# with them), torch and timm; no TensorFlow, TFDS or clu. One wheel more, ml_collections (pure
# Python; needs absl-py and PyYAML only), for the configs of the sweep part: carry the folder
# .whl/ (gitignored) made on a machine with the package index by
#   python -m pip download --no-deps --dest .whl ml_collections==1.1.0
# and this script installs it, offline, into .whl/site when the image lacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}

if ! "$PYTHON" -c 'import ml_collections' 2>/dev/null; then
  if ! ls .whl/ml_collections-*.whl >/dev/null 2>&1; then
    echo "error: ml_collections is not installed and .whl/ has no wheel of it; make it with" \
      "'python -m pip download --no-deps --dest .whl ml_collections==1.1.0' and carry .whl/" >&2
    exit 1
  fi
  "$PYTHON" -m pip install --quiet --no-index --no-deps --target .whl/site .whl/ml_collections-*.whl
  export PYTHONPATH=$PWD/.whl/site${PYTHONPATH:+:$PYTHONPATH}
fi

if [[ ${DRY_RUN:-0} == 1 ]]; then
  set -- --dry "$@"
fi
exec "$PYTHON" -m vit_jax_stems.bench.gpu_check "$@"
