#!/usr/bin/env bash
# Here (dev machine): pack onnxruntime-gpu + the MiniLM weights into parts that fit the device
# tool's 64 MiB per call, and print the calls to send.  Options: see bench/gpu_carry.py --help.
# Run it in the checkout the device tool sends (the session's own), right before the calls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
exec nice -n 10 "$PY" bench/gpu_carry.py "$@"
