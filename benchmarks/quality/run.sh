#!/usr/bin/env bash
# Answer quality of the shipped default (SmolLM2-135M-Instruct + SHINE) against no context and the context in the
# prompt (two prompts: plain, and one asking for a short answer copied from the text), with answer likelihoods.
# Usage: benchmarks/quality/run.sh SQUAD_DEV BABI_TEST [SIZE]
set -euo pipefail
SQUAD_DEV=${1:?squad dev.jsonl}; BABI_TEST=${2:?babi test.jsonl.gz}; SIZE=${3:-500}
OUT=benchmarks/quality; SETS=runs/quality-sets
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python benchmarks/quality/make_eval_sets.py --squad_dev "$SQUAD_DEV" --babi_test "$BABI_TEST" --output_dir "$SETS" \
  --size "$SIZE"
for name in squad_dev squad_dev_sentence babi_test synthetic; do
  peft-shine eval --data "$SETS/$name.jsonl" --methods none,icl,icl_short,shine --likelihood --batch-size 16 \
    --max-new-tokens 24 --output "$OUT/$name.json"
done
python benchmarks/quality/paired_gain.py "$OUT"/squad_dev.json "$OUT"/squad_dev_sentence.json "$OUT"/babi_test.json \
  "$OUT"/synthetic.json
