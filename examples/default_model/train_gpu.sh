#!/usr/bin/env bash
# Train the chosen recipe of the default hypernetwork (recipe.args; stage 1 RECON/COMP on short texts, then stage 2
# context QA) on one GPU within a fixed wall time, and write the packaged adapter, the Trainer logs and a quick quality
# check into $OUT. Runs on the device machine in one call after
# benchmarks/gpu/make_payload.sh's parts arrived (benchmarks/gpu/README.md); verified on CPU with SMOKE=1:
#   SMOKE=1 OUT=runs/gpu-smoke PYTHON=.venv/bin/python examples/default_model/train_gpu.sh
# Knobs (environment): STAGE1_MINUTES (default 2) and MINUTES (stage 2, default 4) of training, BATCH contexts per step
# (32), LR (2e-3), SYNTHETIC documents (18000; 0 = none), FROM (a stage-2 adapter to continue from: skips stage 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the folder that comes back}; PY=${PYTHON:-python3}; SMOKE=${SMOKE:-0}
STAGE1_MINUTES=${STAGE1_MINUTES:-2}; MINUTES=${MINUTES:-4}; BATCH=${BATCH:-32}; LR=${LR:-2e-3}; SYNTHETIC=${SYNTHETIC:-18000}; RUN=runs/gpu
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUN"
start=$(date +%s)
source benchmarks/gpu/setup_device.sh  # base model from .gpu/base parts, wheels, PYTHONPATH
PRECISION="--bf16"; STEPS=100000; EVAL_LIMIT=300
if [ "$SMOKE" = 1 ]; then PRECISION="--use_cpu"; STEPS=2; BATCH=2; SYNTHETIC=20; EVAL_LIMIT=4; fi
$PY examples/default_model/prepare_data.py --squad_train .gpu/data/squad_train.jsonl.gz \
  --babi_train .gpu/data/babi_train.jsonl.gz --output_dir "$RUN/data"
FILES="$RUN/data/instruct.jsonl"; TEXTS="$RUN/data/pretrain_sentences.jsonl"
if [ "$SYNTHETIC" != 0 ]; then
  $PY -m peft_shine.training.synthetic --output "$RUN/data/synthetic.jsonl" --documents "$SYNTHETIC" --seed 0
  $PY -m peft_shine.training.synthetic --output "$RUN/data/synthetic_texts.jsonl" --documents "$SYNTHETIC" --seed 0 --texts
  FILES="$FILES,$RUN/data/synthetic.jsonl"; TEXTS="$TEXTS,$RUN/data/synthetic_texts.jsonl"
fi
RECIPE=$(grep -v '^#' examples/default_model/recipe.args | tr '\n' ' ')
COMMON="--per_device_train_batch_size $BATCH --learning_rate $LR --lr_scheduler_type constant_with_warmup
  --warmup_steps 50 --max_steps $STEPS --save_strategy no --seed 0 --report_to none --logging_steps 10
  --weight_decay 0.01 --max_grad_norm 1.0 --dataloader_num_workers 0 $PRECISION"
if [ -z "${FROM:-}" ]; then  # stage 1: RECON/COMP on short texts (dense copy supervision; benchmarks/recipes)
  $PY examples/pretrain.py --train_file "$TEXTS" --output_dir "$RUN/stage1" $RECIPE $COMMON \
    --max_train_minutes "$STAGE1_MINUTES" 2>&1 | grep -v "it/s\]$" | tee -a "$OUT/train.log" | tail -n 3
  FROM="$RUN/stage1"
fi
$PY examples/instruct.py --train_file "$FILES" --output_dir "$RUN/stage2" --adapter_name_or_path "$FROM" \
  --mode multi --curriculum_steps 2000 $COMMON --max_train_minutes "$MINUTES" 2>&1 | grep -v "it/s\]$" \
  | tee -a "$OUT/train.log" | tail -n 5
# The adapter comes back in parts of at most 15 MiB (the tool returns files of at most 16 MiB).
cp "$RUN/stage2/adapter_config.json" "$OUT/"
split -b 15M -d "$RUN/stage2/adapter_model.safetensors" "$OUT/adapter_model.safetensors.part-"
sha256sum "$RUN/stage2/adapter_model.safetensors" | cut -d' ' -f1 > "$OUT/adapter_model.sha256"
$PY - "$RUN/stage2" "$OUT/trainer_log.json" <<'PY'
import json, sys, pathlib
run, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
logs = {stage: json.loads((run.parent / stage / "trainer_state.json").read_text())["log_history"]
        for stage in ("stage1", "stage2") if (run.parent / stage / "trainer_state.json").is_file()}
out.write_text(json.dumps(logs, indent=1) + "\n")
PY
for name in squad_dev_sentence synthetic; do
  $PY -m peft_shine.cli eval --data ".gpu/data/eval/$name.jsonl" --limit "$EVAL_LIMIT" --methods none,shine \
    --likelihood --batch-size 64 --max-new-tokens 24 --adapter "$RUN/stage2" --output "$OUT/quick_$name.json" \
    2>&1 | grep -v "question/s\]$" | tail -n 6
done
rm -f "$OUT"/quick_*.md
echo "train_gpu.sh: $(( $(date +%s) - start )) s in all"
