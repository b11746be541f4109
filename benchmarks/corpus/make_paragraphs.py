"""Write a corpus of distinct SQuAD dev paragraphs as JSON Lines {"id", "text", "title"} for `absorb-corpus`.

    python benchmarks/corpus/make_paragraphs.py ../shared/data/squad/dev.jsonl runs/corpus/squad_dev_50.jsonl --count 50

A seeded random sample (`--seed`, default 0) of the distinct contexts; each paragraph's id is the id of its first
question in the file. The SQuAD text (CC BY-SA 4.0) is not committed; this script rebuilds the corpus.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from peft_shine.training.data import load_qa_records


def distinct_paragraphs(squad_dev: str, count: int, seed: int) -> list[dict[str, str]]:
    """`count` distinct contexts of a SQuAD-style QA file, sampled with `seed`, in file order."""
    first: dict[str, dict[str, str]] = {}
    for record in load_qa_records(squad_dev):
        first.setdefault(record["context"], {"id": record["id"], "text": record["context"], "title": record["title"]})
    paragraphs = list(first.values())
    if count > len(paragraphs):
        raise ValueError(f"{squad_dev} has {len(paragraphs)} distinct contexts, fewer than {count}.")
    chosen = sorted(random.Random(seed).sample(range(len(paragraphs)), count))
    return [paragraphs[i] for i in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("squad_dev")
    parser.add_argument("output")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paragraphs = distinct_paragraphs(args.squad_dev, args.count, args.seed)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in paragraphs)
    print(f"{len(paragraphs)} paragraphs -> {args.output}")


if __name__ == "__main__":
    main()
