#!/usr/bin/env bash
# The GPU checks (at most ~3 minutes on one H100/H200): the CUDA tests (bf16 training steps, exact fp32 export,
# batched absorb) and the speed benchmark on CUDA, results into $OUT. Runs on the device machine after the base
# model's parts arrived (benchmarks/gpu/README.md); on a machine without a GPU the tests skip and the benchmark stops.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder that comes back}; PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
source benchmarks/gpu/setup_device.sh
mkdir -p "$OUT/speed"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/machine.txt" 2>&1
$PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'peft', peft.__version__)" >> "$OUT/machine.txt" 2>&1
timeout 90 $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider > "$OUT/cuda_tests.log" 2>&1  # kept if killed
tail -n 15 "$OUT/cuda_tests.log"
timeout 150 $PY -m benchmarks.speed.run --device cuda --repeats 3 --output_dir "$OUT/speed" 2>&1 \
  | grep -v "it/s\]$" | tail -n 40
