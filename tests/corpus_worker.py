"""Run by tests/test_corpus.py, alone (SIGKILL test, with `--delay`) or under `torchrun --nproc_per_node 2` (each
rank takes its share from RANK / WORLD_SIZE): `absorb_corpus` of a JSON Lines corpus with the tiny SHINE model of
`build_corpus_model`, into OUT/<format> for every format given.

    python tests/corpus_worker.py DATA OUT [--format folders --format shards] [--batch-size N] [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from peft_shine.corpus import absorb_corpus
from tests.helpers import build_shine, build_tokenizer

BATCH_SIZE = 2
SHARD_SIZE = 5
WINDOW = 5  # = SHARD_SIZE: folders and shards then plan the same batches


def build_corpus_model(tokenizer):
    """The tiny SHINE model of the corpus tests: contexts above 48 tokens are chunked (ranks 2 and 4 mix)."""
    model = build_shine(vocab_size=len(tokenizer), max_context_tokens=48)
    model.base_model.resolve_tokenizer(tokenizer)
    return model


def slow_down(model, seconds: float) -> None:
    """Make every batch take `seconds` longer, so that a test can kill the run between batches' writes."""
    shine = model.base_model
    absorb = shine.absorb_context

    def delayed(*args, **kwargs):
        result = absorb(*args, **kwargs)
        time.sleep(seconds)
        return result

    shine.absorb_context = delayed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out", type=Path)
    parser.add_argument("--format", action="append", default=None)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--delay", type=float, default=0.0)
    options = parser.parse_args()
    torch.set_num_threads(1)
    model = build_corpus_model(build_tokenizer())
    if options.delay:
        slow_down(model, options.delay)
    for format in options.format or ["folders"]:
        absorb_corpus(
            model,
            options.data,
            options.out / format,
            format=format,
            batch_size=options.batch_size,
            window=WINDOW,
            shard_size=SHARD_SIZE,
            progress=False,
            merge_timeout=120,
        )


if __name__ == "__main__":
    main()
