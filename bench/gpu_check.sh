#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) with its results and logs under $OUT.
#   lent GPU machine:  bash bench/gpu_check.sh --stage /root/tf-stage [gpu_check.py options]
#                      (first installs what bench/gpu_carry.sh sent: onnxruntime-gpu, MiniLM)
#   here, on CPU:      bash bench/gpu_check.sh --dry-run [gpu_check.py options]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
args=()
if [ "${1:-}" = "--stage" ]; then
  STAGE=$2
  shift 2
  SITE=${TF_SITE:-/root/tf-site}
  MODEL=${TF_MODEL:-/root/tf-model}
  "$PY" bench/gpu_stage.py install "$STAGE" --site "$SITE" --model "$MODEL" 2>&1 | tee "$OUT/gpu_stage.log"
  [ "${PIPESTATUS[0]}" = 0 ] || exit 2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  args=(--base-model "$MODEL")
fi
"$PY" bench/gpu_check.py ${args[@]+"${args[@]}"} "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
