#!/usr/bin/env bash
# Baselines on the recipe-ablation evaluation sets (a seeded LIMIT of each set's questions, default 100): no context
# and the shipped default SHINE, with teacher-forced answer likelihoods. Every ablation arm reuses the `none` results
# (peft-shine eval --reference) for its open-vocabulary split and likelihood gains.
# Usage: benchmarks/recipes/reference.sh [SETS_DIR] [OUT_DIR]
set -euo pipefail
SETS=${1:-runs/eval-sets}; OUT=${2:-benchmarks/recipes/reference}; LIMIT=${LIMIT:-100}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for name in squad_dev_sentence squad_dev babi_test synthetic; do
  peft-shine eval --data "$SETS/$name.jsonl" --limit "$LIMIT" --methods none,shine --likelihood --batch-size 16 \
    --max-new-tokens 24 --output "$OUT/$name.json"
done
