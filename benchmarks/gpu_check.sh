#!/usr/bin/env bash
# One GPU check, at most ~8 minutes on one H200: see benchmarks/gpu_check.py.
# Usage (repository root): OUT=/some/dir bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
timeout -k 10 465 "$PY" benchmarks/gpu_check.py --out "$OUT" --budget "${BUDGET_S:-420}" 2>&1 | tee "$OUT/gpu_check.log"
echo "exit ${PIPESTATUS[0]}; results in $OUT/gpu_check.md"
