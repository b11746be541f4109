#!/usr/bin/env bash
# Continue stage 2 of the default hypernetwork from a checkpoint: a fresh run (new data order, --seed 1) whose
# learning rate decays linearly from 5e-4 to 0, on a curriculum that moves from answer sentences (100%) to 50% full
# contexts (curriculum_steps = 2 x steps), so short factual prose keeps its share.
# Usage: examples/default_model/continue.sh FROM_CHECKPOINT [RUN_DIR] [STEPS]
# (exactly what produced the shipped checkpoint: continue.sh runs/default/stage2/checkpoint-700 runs/default 600,
#  with OMP_NUM_THREADS=1 because other jobs shared the 2 CPU cores)
set -euo pipefail
FROM=${1:?stage-2 checkpoint to continue from}; RUN=${2:-runs/default}; STEPS=${3:-600}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python examples/instruct.py --train_file "$RUN/data/instruct.jsonl" --adapter_name_or_path "$FROM" \
  --output_dir "$RUN/stage2b" --mode multi --curriculum_steps $((2 * STEPS)) \
  --per_device_train_batch_size 4 --learning_rate 5e-4 --lr_scheduler_type linear --warmup_steps 10 \
  --max_steps "$STEPS" --save_steps 50 --save_total_limit 3 --seed 1 --report_to none --logging_steps 5 \
  --weight_decay 0.01 --max_grad_norm 1.0 --dataloader_num_workers 0
