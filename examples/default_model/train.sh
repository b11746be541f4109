#!/usr/bin/env bash
# The exact recipe of the shipped default hypernetwork (see peft_shine/assets/default/TRAINING.md for results).
# Usage: examples/default_model/train.sh SQUAD_TRAIN BABI_TRAIN [RUN_DIR] [STAGE2_STEPS]
set -euo pipefail
SQUAD=${1:?squad train.jsonl.gz}; BABI=${2:?babi train.jsonl.gz}; RUN=${3:-runs/default}; STEPS2=${4:-1500}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python examples/default_model/prepare_data.py --squad_train "$SQUAD" --babi_train "$BABI" --output_dir "$RUN/data"
COMMON="--report_to none --seed 0 --logging_steps 5 --save_total_limit 2 --dataloader_num_workers 0
  --weight_decay 0.01 --max_grad_norm 1.0 --warmup_steps 20 --lr_scheduler_type constant_with_warmup"
python examples/pretrain.py --train_file "$RUN/data/pretrain.jsonl" --output_dir "$RUN/stage1" \
  --target_modules down_proj --lora_rank 4 --meta_lora_rank 4 --m2p_layers 2 --max_context_tokens 384 \
  --per_device_train_batch_size 2 --learning_rate 1e-3 --max_steps 150 --save_steps 50 $COMMON
python examples/instruct.py --train_file "$RUN/data/instruct.jsonl" --adapter_name_or_path "$RUN/stage1" \
  --output_dir "$RUN/stage2" --mode multi --curriculum_steps 800 \
  --per_device_train_batch_size 4 --learning_rate 1e-3 --max_steps "$STEPS2" --save_steps 100 $COMMON
