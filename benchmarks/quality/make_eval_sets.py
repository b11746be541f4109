"""Fixed, seeded evaluation sets for the default model's quality benchmark (SQuAD v1.1 dev, bAbI v1.2 test).

    python benchmarks/quality/make_eval_sets.py --squad_dev squad/dev.jsonl --babi_test babi/test.jsonl.gz \
        --output_dir runs/eval-sets --size 500

Writes `squad_dev.jsonl` (seeded sample of `--size` questions), `squad_dev_sentence.jsonl` (the same questions with
only the answer's sentence as context), `babi_test.jsonl` (seeded sample across all 20 tasks) and `synthetic.jsonl`
(the first `--size` questions about invented documents of `peft_shine.training.synthetic` with seed 1000, a seed no
training recipe here uses: answers the base cannot know).
"""

import argparse
import json
import random
from pathlib import Path

from peft_shine.training.data import load_qa_records, short_context
from peft_shine.training.synthetic import synthetic_records

SYNTHETIC_SEED = 1000


def sample(records: list[dict], size: int, seed: int) -> list[dict]:
    indices = sorted(random.Random(seed).sample(range(len(records)), size))
    return [records[i] for i in indices]


def write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad_dev", required=True)
    parser.add_argument("--babi_test", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    squad = sample(load_qa_records(args.squad_dev), args.size, args.seed)
    write(out / "squad_dev.jsonl", squad)
    write(out / "squad_dev_sentence.jsonl", [{**r, "context": short_context(r)} for r in squad])
    write(out / "babi_test.jsonl", sample(load_qa_records(args.babi_test), args.size, args.seed))
    write(out / "synthetic.jsonl", synthetic_records(args.size // 3, seed=SYNTHETIC_SEED)[: args.size])


if __name__ == "__main__":
    main()
