#!/usr/bin/env bash
# One-shot GPU check, under 8 minutes, on the lent GPU image as it is (see docs/gpu.md, "Running the GPU check"):
# installs wheelhouse/ offline (`make gpu-wheels` fills it where the package registry is), writes a preflight, then
# runs the GPU-marked tests and the GPU benchmark's parts, each with its own timeout. Results: $OUT/gpu_check.json
# (or benchmarks/results/gpu_check.json), rewritten after every part, logs beside it in gpu_check_logs/.
#   bash benchmarks/gpu_check.sh [--budget-s 450] [--only "gpu tests"]   # PYTHON=... picks the interpreter
# Exits 0 when the check ran to the end, whatever the parts did; on a machine without a GPU every part is "skipped".
set -u
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py --dest "${OUT:-benchmarks/results}" "$@"
