"""Run by tests/test_errors.py (and imported by it for the uninterrupted reference run): a tiny SHINE model trained
with the stock Trainer for `STEPS` steps, saving a checkpoint every `SAVE_STEPS`, logging each step's global step
and loss to `<out>/steps.jsonl` as soon as it is known. With `--hang-at N` it stops after logging step N and waits
to be killed; with `--resume CHECKPOINT` it resumes from that checkpoint.

    python tests/resume_worker.py OUT [--resume CHECKPOINT] [--hang-at N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from tests.helpers import build_tokenizer, train

STEPS = 6
SAVE_STEPS = 2
HANG_SECONDS = 300  # long enough for the test to kill the run; bounded so that an orphan ends by itself


class StepLogger(TrainerCallback):
    """Appends {"step", "loss"} per logged step to a JSON Lines file, flushed to disk at once; optionally hangs after
    logging step `hang_at` (the test then kills the process)."""

    def __init__(self, path: Path, hang_at: int | None = None) -> None:
        self.path = path
        self.hang_at = hang_at

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps({"step": state.global_step, "loss": logs["loss"]}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if state.global_step == self.hang_at:
            time.sleep(HANG_SECONDS)


def run(out: Path, resume: str | None = None, hang_at: int | None = None) -> None:
    """Train (or resume) the tiny model in `out/run`, logging steps to `out/steps.jsonl`."""
    out.mkdir(parents=True, exist_ok=True)
    trainer, _ = train(build_tokenizer(), out, steps=STEPS, save_strategy="steps", save_steps=SAVE_STEPS)
    trainer.add_callback(StepLogger(out / "steps.jsonl", hang_at))
    trainer.train(resume_from_checkpoint=resume)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--resume")
    parser.add_argument("--hang-at", type=int)
    options = parser.parse_args()
    run(options.out, options.resume, options.hang_at)
