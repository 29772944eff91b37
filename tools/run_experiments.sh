#!/usr/bin/env bash
# The runs behind docs/experiments.md, in the order that gives every part a result early:
# half of each sweep (group g00: 8 trials per model and optimizer), then the sample-efficiency
# grid (its 100% runs keep a checkpoint per epoch for the locality history), the locality
# reports, then the second half of the sweeps (g01). Every step resumes: rerun the script after
# a kill and finished trials and runs are kept, not redone.
#
#   nohup bash tools/run_experiments.sh [OUT] > workdirs/exp.log 2>&1 &
#
# OUT (default workdirs/exp) gets sweep_<config>/, sample_efficiency/, locality_<model>/ and
# timing.tsv (wall seconds of each step, appended as each ends).
set -euo pipefail

OUT=${1:-workdirs/exp}
PY=${PYTHON:-python}
EPOCHS=10         # per trial; about 2 CPU-minutes for each of these models on cluttered_mnist5k
TRIALS=16         # per (model, optimizer): P1 uses 64; 16 is what 4 hours of a 2-core CPU allow
DATASET=cluttered_mnist5k
CONFIGS=(vitp vitc convit)
declare -A MODEL=([vitp]=vit_p_1gf [vitc]=vit_c_1gf [convit]=convit_ti)
mkdir -p "$OUT"

timed() {  # timed NAME CMD...: run CMD, append "NAME<TAB>seconds<TAB>rc" to timing.tsv
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s)
  echo "== $(date -u +%FT%TZ) $name: $*"
  "$@" || rc=$?
  printf '%s\t%s\t%s\n' "$name" "$(($(date +%s) - t0))" "$rc" >> "$OUT/timing.tsv"
  return 0
}

sweep_groups() {  # sweep_groups gNN: that group of every (config, optimizer)
  for cfg in "${CONFIGS[@]}"; do
    local groups=""
    for opt in adamw sgd; do groups+="${groups:+,}${MODEL[$cfg]}-$opt-e$EPOCHS-$1"; done
    timed "sweep_$cfg-$1" "$PY" -m vit_jax_stems.sweep --config "configs/$cfg.py:demo,dataset=$DATASET" \
      --trials $TRIALS --optimizers adamw,sgd --epochs $EPOCHS --sweep_seed 0 \
      --groups "$groups" --workdir "$OUT/sweep_$cfg"
  done
}

sweep_groups g00

for cfg in "${CONFIGS[@]}"; do
  timed "sample_efficiency_$cfg" "$PY" -m vit_jax_stems.sweep.sample_efficiency \
    --config "configs/$cfg.py:demo,dataset=$DATASET" --config.total_epochs=$EPOCHS \
    --config.checkpoint_every_epochs=1 --config.keep_checkpoints=$((EPOCHS + 1)) \
    --workdir "$OUT/sample_efficiency"
done

for cfg in "${CONFIGS[@]}"; do
  run="$OUT/sample_efficiency/${MODEL[$cfg]}/f100"
  timed "locality_$cfg" "$PY" -m vit_jax_stems.analysis.locality_report --workdir "$run" \
    --out_dir "$OUT/locality_${MODEL[$cfg]}"
done

sweep_groups g01

timed report "$PY" -m vit_jax_stems.sweep.report --workdir "$OUT/sweep_vitp" "$OUT/sweep_vitc" \
  "$OUT/sweep_convit"
echo "== $(date -u +%FT%TZ) done"
