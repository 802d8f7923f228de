#!/usr/bin/env bash
# One-shot GPU check, under 8 minutes: the GPU-marked tests, then a short GPU benchmark, JSON into $OUT (or
# benchmarks/results/). Runs what the machine has (DALI? TensorRT?) and writes down what it skipped and why.
#   bash benchmarks/gpu_check.sh            # PYTHON=... to pick the interpreter that has fathombatch installed
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${OUT:-benchmarks/results}
mkdir -p "$DEST"
start=$(date +%s)

"$PY" - > "$DEST/gpu_env.json" <<'PYEOF'
import importlib.util, json
import torch
info = {"cuda_available": torch.cuda.is_available(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
for mod in ("nvidia.dali", "tensorrt", "onnxruntime"):
    try:
        spec = importlib.util.find_spec(mod)
    except ModuleNotFoundError:  # "nvidia.dali" without any "nvidia" package
        spec = None
    info[mod] = None if spec is None else __import__(mod, fromlist=["__version__"]).__version__
print(json.dumps(info, indent=2))
PYEOF
cat "$DEST/gpu_env.json"

timeout 240 "$PY" -m pytest -q -rs -m "gpu or dali_gpu or trt" tests/test_gpu.py --junitxml "$DEST/gpu_tests.xml" \
  | tee "$DEST/gpu_tests.txt"
echo "tests exit code: ${PIPESTATUS[0]}"

# Whatever the tests left of 7.5 minutes (at least 150 s); the json is rewritten after every part, so a cut-off run
# still keeps what it measured ("complete": false says it was cut off).
left=$(( 450 - ($(date +%s) - start) )); [ "$left" -lt 150 ] && left=150
timeout "$left" "$PY" benchmarks/gpu_bench.py --out "$DEST/gpu_check.json" --images 512 | tee "$DEST/gpu_bench.txt"
echo "benchmark exit code: ${PIPESTATUS[0]}"
echo "gpu_check took $(( $(date +%s) - start )) s; results in $DEST"
