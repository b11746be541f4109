"""Build the training files for the shipped default hypernetwork (SmolLM2-135M-Instruct) from SQuAD v1.1 train and
bAbI v1.2 train (never the SQuAD dev or bAbI test splits, which are for evaluation).

    python examples/default_model/prepare_data.py --squad_train squad/train.jsonl.gz --babi_train babi/train.jsonl.gz \
        --output_dir runs/default-data

The sources may be in the form they are published in:
- `--squad_train`: JSON Lines QA records, the official `train-v1.1.json`, the Hub dataset `rajpurkar/squad` (its
  train split; offline it must be in the Hugging Face cache) or a `Dataset.save_to_disk` folder of it;
- `--babi_train`: JSON Lines QA records, or the English 1k folder of the official bAbI v1.2 archive
  (`tasks_1-20_v1-2/en`, its `qa*_train.txt` files) or one such file, converted as in `babi_records`.

Writes `pretrain.jsonl` (SQuAD paragraphs as `text`), `pretrain_sentences.jsonl` (the sentences of those paragraphs
with 6 to 60 words, shuffled: short texts for dense RECON/COMP copy supervision) and `instruct.jsonl` (SQuAD + bAbI QA
records, contexts of at most `--max_context_tokens` tokens; longer ones are left out and counted, never cut).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from peft_shine.defaults import load_default_base
from peft_shine.qa_records import validate_qa_record
from peft_shine.sources import load_dataset_source
from peft_shine.tokenization import encode_plain, sentence_spans
from peft_shine.training.data import load_qa_records


def squad_records(source: str) -> list[dict]:
    """SQuAD v1.1 QA records (`source` "squad-v1.1/train" unless given) from JSON Lines, the official nested JSON
    (article -> paragraphs -> qas; answers deduplicated in order), or a Hub id / `save_to_disk` folder (train split)."""
    path = Path(source)
    if path.suffix == ".json":
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
        rows = [
            {
                "id": qa["id"],
                "context": paragraph["context"],
                "question": qa["question"],
                "answers": list(dict.fromkeys(answer["text"] for answer in qa["answers"])),
                "title": article["title"],
            }
            for article in articles
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
        records = [validate_qa_record(row, f"{path}, question {row['id']}") for row in rows]
    elif path.is_file():
        records = load_qa_records(source)
    else:
        records = load_qa_records(load_dataset_source(source, split="train"))
    return [{"source": "squad-v1.1/train", **record} for record in records]


def parse_babi(text: str, task: int, name: str) -> list[dict]:
    """The QA records of one bAbI v1.2 file: a story starts where the line number resets to 1; each question line
    (`N question<TAB>answer<TAB>supporting line numbers`) gives `context` = the story's statements before it (joined
    with "\n"), `answers` = [answer], `supporting_facts` = 0-based indexes into `context.split("\n")`."""
    records, statements, index_of_line, story = [], [], {}, -1
    for line in text.splitlines():
        if not line.strip():
            continue
        number, rest = line.split(" ", 1)
        if int(number) == 1:
            statements, index_of_line, story = [], {}, story + 1
        if "\t" not in rest:
            index_of_line[int(number)] = len(statements)
            statements.append(rest.strip())
            continue
        question, answer, support = rest.split("\t")
        records.append(
            {
                "id": f"babi-en-qa{task}-train-s{story:04d}-l{int(number):02d}",
                "context": "\n".join(statements),
                "question": question.strip(),
                "answers": [answer.strip()],
                "source": f"babi-v1.2/en/{name}",
                "task": task,
                "supporting_facts": [index_of_line[int(i)] for i in support.split()],
            }
        )
    return records


def babi_records(source: str) -> list[dict]:
    """bAbI v1.2 QA records from JSON Lines, or from the official English task files (`qa<N>_<task>_train.txt`, a
    folder of them or one file), converted by `parse_babi` in task order."""
    path = Path(source)
    files = sorted(path.glob("qa*_train.txt"), key=lambda f: int(f.name[2:].split("_")[0])) if path.is_dir() else []
    if path.suffix == ".txt":
        files = [path]
    if not files:
        return load_qa_records(source)
    return [
        record
        for file in files
        for record in parse_babi(file.read_text(encoding="utf-8"), int(file.name[2:].split("_")[0]), file.stem)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad_train", required=True, help="SQuAD v1.1 train: JSONL, train-v1.1.json or a dataset")
    parser.add_argument("--babi_train", required=True, help="bAbI v1.2 train: JSONL, or the en/ folder or a task file")
    parser.add_argument("--output_dir", required=True, help="where the three JSONL files are written")
    parser.add_argument("--max_context_tokens", type=int, default=384, help="longer contexts are left out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffles")
    args = parser.parse_args(argv)
    _, tokenizer = load_default_base()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    records = squad_records(args.squad_train) + babi_records(args.babi_train)
    contexts = sorted({r["context"] for r in records})
    lengths = dict(zip(contexts, map(len, encode_plain(tokenizer, contexts))))
    kept = [r for r in records if lengths[r["context"]] <= args.max_context_tokens]
    random.Random(args.seed).shuffle(kept)
    with open(out / "instruct.jsonl", "w") as f:
        for record in kept:
            f.write(json.dumps(record) + "\n")

    paragraphs = sorted({r["context"] for r in kept if r["source"].startswith("squad")})
    random.Random(args.seed).shuffle(paragraphs)
    with open(out / "pretrain.jsonl", "w") as f:
        for text in paragraphs:
            f.write(json.dumps({"text": text}) + "\n")
    sentences = [text[start:end].strip() for text in paragraphs for start, end in sentence_spans(text)]
    sentences = [sentence for sentence in sentences if 6 <= len(sentence.split()) <= 60]
    random.Random(args.seed).shuffle(sentences)
    with open(out / "pretrain_sentences.jsonl", "w") as f:
        for text in sentences:
            f.write(json.dumps({"text": text}) + "\n")
    print(f"instruct.jsonl: {len(kept)} of {len(records)} records (contexts <= {args.max_context_tokens} tokens)")
    print(f"pretrain_sentences.jsonl: {len(sentences)} sentences of 6 to 60 words")
    print(f"pretrain.jsonl: {len(paragraphs)} SQuAD paragraphs")


if __name__ == "__main__":
    main()
