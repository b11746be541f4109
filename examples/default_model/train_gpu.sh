#!/usr/bin/env bash
# Train the chosen recipe (recipe.args) of the default hypernetwork on one GPU within a fixed wall time, and write the
# packaged adapter, the Trainer log and a quick quality check into $OUT. Runs on the device machine in one call after
# benchmarks/gpu/make_payload.sh's parts arrived (benchmarks/gpu/README.md); verified on CPU with SMOKE=1:
#   SMOKE=1 OUT=runs/gpu-smoke PYTHON=.venv/bin/python examples/default_model/train_gpu.sh
# Knobs (environment): MINUTES of training (default 6), BATCH contexts per step (32), LR (2e-3), SYNTHETIC documents
# (18000; 0 = none), FROM (an adapter to continue from instead of a new one).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder that comes back}; PY=${PYTHON:-python3}; SMOKE=${SMOKE:-0}
MINUTES=${MINUTES:-6}; BATCH=${BATCH:-32}; LR=${LR:-2e-3}; SYNTHETIC=${SYNTHETIC:-18000}; RUN=runs/gpu
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"
start=$(date +%s)
source benchmarks/gpu/setup_device.sh  # base model from .gpu/base parts, wheels, PYTHONPATH
PRECISION="--bf16"; STEPS=100000; EVAL_LIMIT=300
if [ "$SMOKE" = 1 ]; then PRECISION="--use_cpu"; STEPS=2; BATCH=2; SYNTHETIC=20; EVAL_LIMIT=4; fi
$PY examples/default_model/prepare_data.py --squad_train .gpu/data/squad_train.jsonl.gz \
  --babi_train .gpu/data/babi_train.jsonl.gz --output_dir "$RUN/data"
FILES="$RUN/data/instruct.jsonl"
if [ "$SYNTHETIC" != 0 ]; then
  $PY -m peft_shine.synthetic --output "$RUN/data/synthetic.jsonl" --documents "$SYNTHETIC" --seed 0
  FILES="$FILES,$RUN/data/synthetic.jsonl"
fi
RECIPE=$(grep -v '^#' examples/default_model/recipe.args | tr '\n' ' ')
FROM_ARGS=${FROM:+--adapter_name_or_path $FROM}
$PY examples/instruct.py --train_file "$FILES" --output_dir "$RUN/stage2" $RECIPE $FROM_ARGS \
  --curriculum_steps 2000 --per_device_train_batch_size "$BATCH" --learning_rate "$LR" \
  --lr_scheduler_type constant_with_warmup --warmup_steps 50 --max_steps "$STEPS" --max_train_minutes "$MINUTES" \
  --save_strategy no --seed 0 --report_to none --logging_steps 10 --weight_decay 0.01 --max_grad_norm 1.0 \
  --dataloader_num_workers 0 $PRECISION 2>&1 | grep -v "it/s\]$" | tee "$OUT/train.log" | tail -n 5
# The adapter comes back in parts of at most 15 MiB (the tool returns files of at most 16 MiB).
cp "$RUN/stage2/adapter_config.json" "$OUT/"
split -b 15M -d "$RUN/stage2/adapter_model.safetensors" "$OUT/adapter_model.safetensors.part-"
sha256sum "$RUN/stage2/adapter_model.safetensors" | cut -d' ' -f1 > "$OUT/adapter_model.sha256"
$PY - "$RUN/stage2" "$OUT/trainer_log.json" <<'PY'
import json, sys, pathlib
run, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
log = json.loads((run / "trainer_state.json").read_text())["log_history"]
out.write_text(json.dumps(log, indent=1) + "\n")
PY
for name in squad_dev_sentence synthetic; do
  $PY -m peft_shine.cli eval --data ".gpu/data/eval/$name.jsonl" --limit "$EVAL_LIMIT" --methods none,shine \
    --likelihood --batch-size 64 --max-new-tokens 24 --adapter "$RUN/stage2" --output "$OUT/quick_$name.json" \
    2>&1 | grep -v "question/s\]$" | tail -n 6
done
rm -f "$OUT"/quick_*.md
echo "train_gpu.sh: $(( $(date +%s) - start )) s in all"
