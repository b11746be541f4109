"""Interleaved A/B timing of one stage-2 training step (forward + backward on a fixed batch) under several settings,
in one process: float32, bfloat16 autocast, `torch.compile` of the M2P. Settings alternate round by round, so a busy
machine slows all of them alike and the ratios stay meaningful (absolute seconds do not; see throughput.py).

    python benchmarks/recipes/ab_step.py --rounds 6 --threads 1 --output benchmarks/recipes/ab_step.json

Also reports the loss of each setting on the same batch (bf16 must stay close to float32).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from throughput import add_recipe_arguments, recipe_model_and_data  # the script beside this one

from peft_shine.training.data import ShineDataCollator


def step(model, batch, bf16: bool) -> tuple[float, float]:
    """Seconds and loss of one forward + backward."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_recipe_arguments(parser)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--compile", action="store_true", help="add a setting with torch.compile of the M2P")
    parser.set_defaults(threads=1)
    args = parser.parse_args()
    model, tokenizer, dataset = recipe_model_and_data(args, 400)
    model.train()
    batch = ShineDataCollator(tokenizer, 384, "error")([dataset[i] for i in range(args.batch_size)])
    tokens = batch["input_ids"].numel() + batch["context_input_ids"].numel()
    settings = {"float32": (model, False), "bf16_autocast": (model, True)}
    if args.compile:
        model.base_model.hypernetwork.m2p.compile()
        settings = {"m2p_compiled_float32": (model, False), **settings}
    times: dict[str, list[float]] = {name: [] for name in settings}
    losses: dict[str, float] = {}
    for subject, bf16 in settings.values():  # warm-up (and compilation) round, not timed
        step(subject, batch, bf16)
    for _ in range(args.rounds):
        for name, (subject, bf16) in settings.items():
            seconds, losses[name] = step(subject, batch, bf16)
            times[name].append(seconds)
    reference = statistics.median(times["float32"]) if "float32" in times else None
    result = {
        "settings": vars(args),
        "tokens_per_step": tokens,
        "median_seconds": {name: statistics.median(values) for name, values in times.items()},
        "speedup_over_float32": {name: reference / statistics.median(values) for name, values in times.items()},
        "loss_on_the_batch": losses,
        "machine": f"{platform.machine()}, {args.threads} thread(s), torch {torch.__version__}",
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
