#!/usr/bin/env bash
# CE vs distillation on the same budget: stage 2 from the shipped recipe's stage-1 adapter, then bAbI/SQuAD quality.
# Usage: benchmarks/distillation/run.sh STAGE1_ADAPTER INSTRUCT_JSONL EVAL_JSONL [STEPS] [EVAL_LIMIT]
set -euo pipefail
STAGE1=${1:?stage-1 adapter}; DATA=${2:?instruct.jsonl}; EVAL=${3:?eval jsonl}; STEPS=${4:-40}; LIMIT=${5:-100}
OUT=runs/distillation; export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for loss in ce distill; do
  python examples/instruct.py --train_file "$DATA" --adapter_name_or_path "$STAGE1" --output_dir "$OUT/$loss" \
    --loss "$loss" --mode multi --curriculum_steps "$STEPS" --per_device_train_batch_size 4 --learning_rate 1e-3 \
    --max_steps "$STEPS" --warmup_steps 5 --lr_scheduler_type constant_with_warmup --save_strategy no \
    --report_to none --seed 0 --logging_steps 5 --dataloader_num_workers 0
  sed -i 's/"context_overflow": "error"/"context_overflow": "chunk"/' "$OUT/$loss/adapter_config.json"
  peft-shine eval --data "$EVAL" --methods shine --limit "$LIMIT" --adapter "$OUT/$loss" --max-new-tokens 16 \
    --batch-size 16 --output "benchmarks/distillation/$loss.json"
done
