"""Build the training files for the shipped default hypernetwork (SmolLM2-135M-Instruct) from SQuAD v1.1 train and
bAbI v1.2 train (never the SQuAD dev or bAbI test splits, which are for evaluation).

    python examples/default_model/prepare_data.py --squad_train squad/train.jsonl.gz --babi_train babi/train.jsonl.gz \
        --output_dir runs/default-data

Writes `pretrain.jsonl` (SQuAD paragraphs as `text`), `pretrain_sentences.jsonl` (the sentences of those paragraphs
with 6 to 60 words, shuffled: short texts for dense RECON/COMP copy supervision) and `instruct.jsonl` (SQuAD + bAbI QA
records, contexts of at most `--max_context_tokens` tokens; longer ones are left out and counted, never cut).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from peft_shine.data import load_qa_records
from peft_shine.defaults import load_default_base
from peft_shine.tokenization import encode_plain, sentence_spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad_train", required=True)
    parser.add_argument("--babi_train", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_context_tokens", type=int, default=384)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _, tokenizer = load_default_base()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    records = load_qa_records(args.squad_train) + load_qa_records(args.babi_train)
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
