#!/usr/bin/env bash
# One arm of the recipe ablation: stage 2 from scratch on a fixed budget of training contexts (same data order for
# every arm on the same data: --seed 0), then the arm's SHINE answers on the four evaluation sets (a seeded LIMIT of
# their questions, default 100) scored against benchmarks/recipes/reference (open-vocabulary split, likelihood gains).
# Usage: benchmarks/recipes/run_arm.sh NAME STEPS [instruct.py flags that override the defaults below ...]
# e.g.   benchmarks/recipes/run_arm.sh a_today 300
#        benchmarks/recipes/run_arm.sh c_up_down 300 --target_modules up_proj,down_proj
set -euo pipefail
NAME=${1:?arm name}; STEPS=${2:?training steps (4 contexts each)}; shift 2
RUN=runs/recipes/$NAME; OUT=benchmarks/recipes/arms/$NAME; SETS=${SETS:-runs/eval-sets}
DATA=${DATA:-runs/data/instruct.jsonl}; LIMIT=${LIMIT:-100}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
if [ ! -f "$RUN/adapter_model.safetensors" ]; then
  python examples/instruct.py --train_file "$DATA" --output_dir "$RUN" --mode multi --curriculum_steps "$STEPS" \
    --target_modules down_proj --lora_rank 4 --meta_lora_rank 4 --m2p_layers 2 --max_context_tokens 384 \
    --per_device_train_batch_size 4 --learning_rate 1e-3 --lr_scheduler_type constant_with_warmup --warmup_steps 20 \
    --max_steps "$STEPS" --save_steps 100 --save_total_limit 1 --seed 0 --report_to none --logging_steps 5 \
    --weight_decay 0.01 --max_grad_norm 1.0 --dataloader_num_workers 0 "$@" 2>&1 | tee "$RUN.train.log" \
    | grep -v "it/s\]$" || true
  test -f "$RUN/adapter_model.safetensors"
fi
python - "$RUN" "$OUT" <<'PY'
import json, sys, pathlib
run, out = map(pathlib.Path, sys.argv[1:])
state = max(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
(out / "log_history.json").write_text(json.dumps(json.loads(state.read_text())["log_history"], indent=1) + "\n")
PY
for name in squad_dev_sentence squad_dev babi_test synthetic; do
  while [ ! -f benchmarks/recipes/reference/$name.json ]; do sleep 30; done  # reference.sh may still be running
  peft-shine eval --data "$SETS/$name.jsonl" --limit "$LIMIT" --methods shine --likelihood --batch-size 16 \
    --max-new-tokens 24 --adapter "$RUN" --reference benchmarks/recipes/reference/$name.json \
    --output "$OUT/$name.json" | tail -4
done
