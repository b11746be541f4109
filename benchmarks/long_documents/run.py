"""Long-document benchmark: does SHINE answer questions about the start, middle and end of a long document?

    python -m benchmarks.long_documents.run --squad_dev squad/dev.jsonl --device auto --output_dir runs/long-docs
    python -m benchmarks.long_documents.run --quick --squad_dev tiny.jsonl --output_dir /tmp/long   # smoke test

Documents of `--lengths` tokens (default 1024, 2048, 4096, 8192) are built by concatenating seeded random SQuAD dev
paragraphs (separated by blank lines). For each document, up to `--questions_per_position` questions are asked whose
gold paragraph (the paragraph the SQuAD question was written for) has its centre in the first, middle or last third
of the document. Methods, all greedy with the question in the chat template:

- `none`: the base model, question alone (the floor: what the base knows without the document);
- `icl`: the base model with the document in the prompt (`icl_prompt`). A prompt + answer longer than the base's
  `max_position_embeddings` (or `--icl_max_tokens`) keeps the first document tokens that fit; the truncation and
  whether the gold paragraph survived it are recorded;
- `shine_chunked`: `absorb_context` with `context_overflow="chunk"` (chunks of `max_context_tokens`, chunk LoRAs
  concatenated along the rank axis: the mean of the chunk deltas, or their sum with `--chunk_combination sum`), no
  rank budget;
- `shine_compressed`: the same with `max_lora_rank=--max_rank` (truncated SVD; `compression_error` recorded).

Plus a needle-in-a-haystack table: "The secret code of the <name> archive is <7-digit number>." inserted as its own
paragraph at depth 0, 25, 50, 75 and 100 % of fresh documents of each length; recall = the number appears in the
answer to "What is the secret code of the <name> archive?".

Writes `results.json` (machine block with the exact command, settings, every prediction), `results.md`,
`f1_by_position.png` and `needle.png` to `--output_dir`. Without `--base`/`--adapter` the embedded default
(SmolLM2-135M-Instruct + the shipped hypernetwork) is used.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from benchmarks.common import Subject, add_run_arguments, machine_info, max_positions, subject_on_device
from benchmarks.long_documents.benches import (
    adaptation_summary,
    bench_needle,
    bench_qa,
    log,
    needle_cells,
    qa_cells,
    warm_up,
)
from benchmarks.long_documents.documents import load_corpus
from benchmarks.long_documents.methods import METHODS, QUICK, Bench, Settings
from benchmarks.long_documents.report import markdown_report, write_outputs


def _lengths(text: str) -> tuple[int, ...]:
    """ "1k,2k,4096" -> (1024, 2048, 4096)."""
    values = []
    for item in text.split(","):
        item = item.strip().lower()
        values.append(int(item[:-1]) * 1024 if item.endswith("k") else int(item))
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"lengths must be positive token counts, got {text!r}")
    return tuple(values)


def _depths(text: str) -> tuple[float, ...]:
    values = tuple(float(item) for item in text.split(","))
    if not values or not all(0.0 <= value <= 1.0 for value in values):
        raise argparse.ArgumentTypeError(f"depths must be fractions in [0, 1], got {text!r}")
    return values


def _methods(text: str) -> tuple[str, ...]:
    values = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [value for value in values if value not in METHODS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The command line options (the model a test passes to `main` has no option). Options left out take the
    default settings, or the `--quick` ones."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad_dev", required=True, help="SQuAD dev JSONL(.gz): context, question, answers")
    add_run_arguments(
        parser,
        "runs/long_documents",
        "where results and plots go",
        "tiny smoke configuration (lengths 64, 128; 1 question)",
    )
    parser.add_argument("--lengths", type=_lengths, help="document token targets (default 1k,2k,4k,8k)")
    parser.add_argument("--questions_per_position", type=int, help="questions per third of a document (default 10)")
    parser.add_argument("--documents_per_length", type=int, help="QA documents per length (default 3)")
    parser.add_argument("--needle_trials", type=int, help="needle documents per (length, depth) (default 5)")
    parser.add_argument("--depths", type=_depths, help="needle depths as fractions (default 0,0.25,0.5,0.75,1)")
    parser.add_argument("--methods", type=_methods, help=f"comma-separated subset of {','.join(METHODS)} (default all)")
    parser.add_argument("--max_rank", type=int, help="rank budget of shine_compressed (default 64)")
    parser.add_argument("--max_context_tokens", type=int, help="SHINE chunk size (default: the adapter config's)")
    parser.add_argument(
        "--chunk_combination", choices=["mean", "sum"], help="mean or sum of the chunk deltas (default mean)"
    )
    parser.add_argument(
        "--icl_max_tokens", type=int, help="ICL prompt + answer limit (default max_position_embeddings)"
    )
    parser.add_argument("--max_new_tokens", type=int, help="greedy answer length (default 32)")
    parser.add_argument("--batch_size", type=int, help="questions per generate call (default 8)")
    parser.add_argument("--seed", type=int, help="documents, questions and needles (default 0)")
    return parser


def resolve_settings(args: argparse.Namespace) -> Settings:
    """The default or quick settings with the options given on the command line."""
    settings = QUICK if args.quick else Settings()
    overrides = {f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name) is not None}
    settings = replace(settings, **overrides)
    positive = ("questions_per_position", "documents_per_length", "needle_trials", "max_rank", "max_new_tokens")
    if any(getattr(settings, name) < 1 for name in (*positive, "batch_size")):
        raise SystemExit(f"error: {', '.join(positive)} and batch_size must be >= 1")
    return settings


def main(argv: Sequence[str] | None = None, *, subject: Subject | None = None) -> dict[str, Any]:
    """Run the QA and needle benchmarks and write the outputs; returns the results. `subject` (for tests) replaces
    the model that `--base`/`--adapter` would load."""
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)
    subject, device, model = subject_on_device(args, subject)
    positions = max_positions(subject.model)
    bench = Bench(subject, settings, device, settings.icl_max_tokens or positions)
    corpus = load_corpus(args.squad_dev, subject.tokenizer)
    log(f"{len(corpus.paragraphs)} paragraphs; warming up on {device}")
    warm_up(bench, corpus)
    documents, predictions, qa_runs = bench_qa(bench, corpus)
    trials, needle_runs = bench_needle(bench, corpus)
    results: dict[str, Any] = {
        "machine": machine_info(device),
        "model": model,
        "settings": {**asdict(settings), "quick": args.quick},
        "icl_limit": bench.icl_limit,
        "data": {
            "squad_dev": args.squad_dev,
            "paragraphs": len(corpus.paragraphs),
            "questions": sum(map(len, corpus.questions)),
        },
        "documents": documents,
        "qa": {"cells": qa_cells(predictions, settings), "predictions": predictions},
        "needle": {"cells": needle_cells(trials, settings), "trials": trials},
        "adaptation": adaptation_summary(qa_runs + needle_runs, settings),
        "runs": qa_runs + needle_runs,
    }
    output_dir = Path(args.output_dir)
    write_outputs(results, output_dir)
    print(markdown_report(results))
    log(f"wrote {output_dir}/results.json, results.md, f1_by_position.png and needle.png")
    return results


if __name__ == "__main__":
    main()
