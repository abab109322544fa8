#!/usr/bin/env bash
# One prepared call on a lent GPU machine (H100/H200, Python 3.12, torch 2.11): build the ops, profile
# the core's steps at 1024, `pti bench` at 1024 and the official PTI beside it (.peers/, carried), one
# `pti run --fast` at 1024 end to end, the GPU tests, then train the demo generator (distillation from
# the DCGAN, python -m pti.train.distill) for the minutes left. Everything it measures goes to $OUT (at most 8 files of 16 MiB). Each
# stage has its own time cap; a stage that fails or runs out of time is recorded and the next
# one runs. See tools/README.md (how to prepare the wheels, how to call it, the dry run).
#
#   OUT=/tmp/out bash tools/device_check.sh                           # on the GPU machine
#   OUT=/tmp/out DEVICE_CHECK_DRY_RUN=1 bash tools/device_check.sh    # here: CPU, tiny, seconds per stage
#
# Knobs: DEVICE_CHECK_BUDGET_S (whole script, default 525 s; dry run 900, caps doubled), DEVICE_CHECK_WORK
# (scratch, default /tmp/pti_device_check), PYTHON (default python3), DEVICE_CHECK_BENCH_ARGS,
# DEVICE_CHECK_RUN_ARGS (replace the bench / PTI-run options), DEVICE_CHECK_TRAIN_INIT (a distillation
# .safetensors to warm-start from or state.pt to resume; default tools/train_state/distill_28kimg.safetensors),
# DEVICE_CHECK_TRAIN_ARGS (more pti.train.distill options), PTI_DEVICE_TRAIN_CMD (replaces the training
# command; it must write its *.safetensors checkpoint under $TRAIN_DIR).
set -u
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
DRY=${DEVICE_CHECK_DRY_RUN:-0}
PY=${PYTHON:-python3}
WORK=${DEVICE_CHECK_WORK:-/tmp/pti_device_check}
if [ "$DRY" = 1 ]; then BUDGET=${DEVICE_CHECK_BUDGET_S:-900}; else BUDGET=${DEVICE_CHECK_BUDGET_S:-525}; fi
OUT=${OUT:-$WORK/out}
START=$(date +%s)
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT" || exit 2
LOG=$OUT/log.txt
export OUT DEVICE_CHECK_WORK=$WORK DEVICE_CHECK_DRY_RUN=$DRY PYTHON=$PY
export PYTHONPATH=$REPO:$WORK/site${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 PTI_EXTENSIONS_DIR=$WORK/extensions MPLBACKEND=Agg
# Nothing outside the machine can be reached: make downloads (the LPIPS backbones) fail at once
# through a closed local port instead of waiting for their socket timeout, in every process.
export HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
  http_proxy=http://127.0.0.1:9
SCALE=1
if [ "$DRY" = 1 ]; then export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CUDA_VISIBLE_DEVICES=""; SCALE=2; fi
: >"$WORK/stages.tsv"

remaining() { echo $((BUDGET - ($(date +%s) - START))); }

# stage NAME NOMINAL_CAP RESERVE STEP: run `device_check.py STEP` for at most min(NOMINAL_CAP,
# time left - RESERVE) seconds (RESERVE: what the later stages need at least), then refresh $OUT.
# The step sees its cap as DEVICE_CHECK_STAGE_CAP (the training step stops itself before it).
stage() {
  local name=$1 nominal=$(($2 * SCALE)) reserve=$3 step=$4 cap rc t0
  cap=$(($(remaining) - reserve))
  [ "$cap" -gt "$nominal" ] && cap=$nominal
  if [ "$cap" -lt 15 ]; then
    printf '%s\t-1\t0\t%s\tskipped: %ss left\n' "$name" "$cap" "$(remaining)" >>"$WORK/stages.tsv"
  else
    echo "===== $name: $step, cap ${cap}s, $(remaining)s left of ${BUDGET}s =====" >>"$LOG"
    t0=$(date +%s)
    DEVICE_CHECK_STAGE_CAP=$cap timeout --signal=INT --kill-after=30 "$cap" "$PY" tools/device_check.py "$step" \
      >>"$LOG" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\t\n' "$name" "$rc" "$(($(date +%s) - t0))" "$cap" >>"$WORK/stages.tsv"
    echo "===== $name: rc $rc after $(($(date +%s) - t0))s =====" >>"$LOG"
  fi
  "$PY" tools/device_check.py finish >>"$LOG" 2>&1
}

echo "pti device check: dry run $DRY, budget ${BUDGET}s, python $("$PY" --version 2>&1), $(date)" >"$LOG"
command -v nvidia-smi >/dev/null && [ "$DRY" != 1 ] && nvidia-smi >>"$LOG" 2>&1
# In order of value (issue 30): the profile, the bench with the official code beside it, `pti run --fast`
# end to end; then the GPU tests and, with whatever is left, training.
#     name               nominal cap  reserve  step
stage 0-setup            60           400      setup
stage 1-build            150          330      build
stage 2a-profile         60           270      profile
stage 2b-bench           170          160      bench
stage 2c-official        130          60       official
stage 3-pti-run          120          20       pti-run
stage 4-gpu-tests        90           15       gpu-tests
stage 5-train            100000       20       train
echo "pti device check: done in $(($(date +%s) - START))s; files in $OUT:" >>"$LOG"
ls -la "$OUT" >>"$LOG"
"$PY" tools/device_check.py finish >>"$LOG" 2>&1
tail -n 40 "$OUT/summary.md"
exit 0
