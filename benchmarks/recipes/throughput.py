"""Stage-2 training throughput of one SHINE recipe on this machine: seconds per step and tokens per second through a
stock `transformers.Trainer`, for float32 or bfloat16 autocast, a torch thread count, a frozen-encoder warm start and
`torch.compile` of the M2P.

    python benchmarks/recipes/throughput.py --train_file runs/data/instruct.jsonl --steps 30 --threads 2 [--bf16] \
        [--freeze_encoder] [--compile_m2p] [--mode single] --target_modules down_proj --lora_rank 4 \
        --output runs/throughput/x.json

The first `--warmup` steps are not timed. Tokens per step count the encoded context tokens (with memory slots) and
the answering-pass tokens, padding included (what the CPU computes). The per-step losses are kept so that two settings
run on the same data order can be compared.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from peft_shine.defaults import load_default_base
from peft_shine.training import ShineArguments, ShineTrainingCallback, build_shine_model
from peft_shine.training.data import InstructDataset, ShineDataCollator, load_qa_records


class StepTimer(TrainerCallback):
    """Wall-clock seconds of every optimizer step, and the logged losses."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class TokenCountingCollator(ShineDataCollator):
    """`ShineDataCollator` that also counts the tokens it hands to the model."""

    tokens: int = 0

    def __call__(self, features):
        batch = super().__call__(features)
        self.tokens += batch["input_ids"].numel() + batch["context_input_ids"].numel()
        return batch


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared with ab_step.py: data, batch, threads and the SHINE recipe."""
    parser.add_argument("--train_file", default="runs/data/instruct.jsonl")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--curriculum_progress", type=float, default=0.5, help="share of full contexts")
    parser.add_argument("--target_modules", default="down_proj")
    parser.add_argument("--lora_rank", type=int, default=4)
    parser.add_argument("--meta_lora_rank", type=int, default=4)
    parser.add_argument("--m2p_layers", type=int, default=2)
    parser.add_argument("--mode", choices=("multi", "single"), default="multi", help="questions per context item")
    parser.add_argument("--output", required=True)


def recipe_model_and_data(args: argparse.Namespace, num_records: int):
    """(trainable SHINE model on the default base, tokenizer, stage-2 dataset of the first `num_records` records at
    `curriculum_progress`), with `threads` torch threads and seed 0."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base, tokenizer = load_default_base()
    shine = ShineArguments(
        lora_rank=args.lora_rank,
        meta_lora_rank=args.meta_lora_rank,
        m2p_layers=args.m2p_layers,
        max_context_tokens=384,
        target_modules=args.target_modules,
    )
    model = build_shine_model(base, tokenizer, shine)
    dataset = InstructDataset(
        load_qa_records(args.train_file)[:num_records], tokenizer, mode=args.mode, curriculum_steps=1
    )
    dataset.set_progress(args.curriculum_progress)
    return model, tokenizer, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(parser)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--freeze_encoder", action="store_true")
    parser.add_argument("--compile_m2p", action="store_true")
    args = parser.parse_args()
    model, tokenizer, dataset = recipe_model_and_data(args, args.steps * args.batch_size * 8)
    if args.compile_m2p:
        model.base_model.hypernetwork.m2p.compile()
    collator = TokenCountingCollator(tokenizer, 384, "error")
    timer = StepTimer()
    training_args = TrainingArguments(
        output_dir="runs/throughput/tmp",
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        bf16=args.bf16,
        use_cpu=True,
        seed=0,
    )
    callbacks = [ShineTrainingCallback(None, args.steps if args.freeze_encoder else 0), timer]
    trainer = Trainer(
        model=model, args=training_args, train_dataset=dataset, data_collator=collator, callbacks=callbacks
    )
    trainer.train()
    timed = timer.seconds[args.warmup :]
    seconds_per_step = statistics.median(timed)
    result = {
        "settings": vars(args),
        "seconds_per_step_median": seconds_per_step,
        "seconds_per_step_mean": statistics.fmean(timed),
        "tokens_per_second": collator.tokens / sum(timer.seconds),
        "contexts_per_second": args.batch_size / seconds_per_step,
        "losses": timer.losses,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "losses"}, indent=2))


if __name__ == "__main__":
    main()
