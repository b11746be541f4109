#!/usr/bin/env bash
# Absorbing a context (SHINE) against fine-tuning a fresh LoRA on it (sft), on the same SQuAD dev questions: the
# answer F1/EM each reaches and the seconds each needs to adapt to one context.
# Usage: benchmarks/adaptation/run.sh SQUAD_DEV BABI_TEST [LIMIT]   (the inputs of benchmarks/quality/run.sh)
set -euo pipefail
SQUAD_DEV=${1:?squad dev.jsonl}; BABI_TEST=${2:?babi test.jsonl.gz}; LIMIT=${3:-100}
OUT=benchmarks/adaptation; SETS=runs/eval-sets
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python benchmarks/quality/make_eval_sets.py --squad_dev "$SQUAD_DEV" --babi_test "$BABI_TEST" --output_dir "$SETS" \
  --size 500
# batch size 1: every context is absorbed (or trained on) alone, so adaptation seconds are per context. The baselines
# do not depend on the SHINE checkpoint, so they are a separate run (rerun only the second after retraining).
COMMON=(--data "$SETS/squad_dev.jsonl" --limit "$LIMIT" --batch-size 1 --max-new-tokens 24)
peft-shine eval "${COMMON[@]}" --methods none,icl,sft --output "$OUT/squad_dev_baselines.json"
peft-shine eval "${COMMON[@]}" --methods shine --output "$OUT/squad_dev_shine.json"
