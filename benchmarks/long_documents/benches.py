"""The long-document benchmark's measurements: QA by the position of the gold paragraph, needle trials, and their
aggregation into cells (F1 / EM / recall with CIs) and adaptation costs."""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.long_documents.documents import (
    POSITIONS,
    Corpus,
    assemble,
    build_document,
    needle_document,
    needle_found,
    pick_questions,
)
from benchmarks.long_documents.methods import SHINE_METHODS, Bench, Settings, answer, run_record
from peft_shine.evaluation import exact_match, f1, mean_with_ci


def log(message: str) -> None:
    """A progress line on stderr, prefixed `[long_documents]`."""
    print(f"[long_documents] {message}", file=sys.stderr, flush=True)


def warm_up(bench: Bench, corpus: Corpus) -> None:
    """One untimed absorb, SHINE answer and ICL answer, so that one-time costs (kernels, caches) are not measured."""
    document = assemble(bench.tokenizer, [corpus.paragraphs[0]], [0])
    question = corpus.questions[0][0]["question"]
    for method in ("icl", "shine_chunked"):
        answer(bench, method, document, [question])


def bench_qa(bench: Bench, corpus: Corpus) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """SQuAD questions about long documents: (documents, predictions, method runs)."""
    settings = bench.settings
    documents, predictions, runs = [], [], []
    for length in settings.lengths:
        for index in range(settings.documents_per_length):
            rng = random.Random(f"qa-{settings.seed}-{length}-{index}")
            document = build_document(corpus, bench.tokenizer, length, rng)
            questions = pick_questions(corpus, document, settings.questions_per_position, rng)
            counts = {p: sum(q["position"] == p for q in questions) for p in POSITIONS}
            log(
                f"qa: {length} tokens, document {index + 1}/{settings.documents_per_length}: {document.num_tokens} "
                f"tokens, {len(document.sources)} paragraphs, questions per third {counts}"
            )
            documents.append(
                {
                    "length": length,
                    "document": index,
                    "document_tokens": document.num_tokens,
                    "paragraphs": len(document.sources),
                    "questions_per_position": counts,
                }
            )
            if not questions:
                continue
            for method in settings.methods:
                result = answer(bench, method, document, [q["question"] for q in questions])
                runs.append(run_record("qa", length, index, method, document, result))
                for number, (question, prediction) in enumerate(zip(questions, result.predictions, strict=True)):
                    item = {
                        "method": method,
                        "length": length,
                        "document": index,
                        **question,
                        "prediction": prediction,
                        "f1": f1(prediction, question["answers"]),
                        "em": exact_match(prediction, question["answers"]),
                    }
                    if result.icl_fits is not None:
                        fit = result.icl_fits[number]
                        item["icl_truncated"] = fit.dropped_tokens > 0
                        item["gold_in_icl_window"] = document.spans[question["paragraph"]][1] <= len(fit.context)
                    predictions.append(item)
    return documents, predictions, runs


def bench_needle(bench: Bench, corpus: Corpus) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Needle-in-a-haystack trials: (trials, method runs)."""
    settings = bench.settings
    trials, runs = [], []
    for length in settings.lengths:
        log(f"needle: {length} tokens, {len(settings.depths)} depths x {settings.needle_trials} trial(s)")
        for depth in settings.depths:
            for trial in range(settings.needle_trials):
                rng = random.Random(f"needle-{settings.seed}-{length}-{depth}-{trial}")
                document, needle = needle_document(corpus, bench.tokenizer, length, depth, rng)
                for method in settings.methods:
                    result = answer(bench, method, document, [needle.question])
                    runs.append(run_record("needle", length, trial, method, document, result))
                    prediction = result.predictions[0]
                    item = {
                        "method": method,
                        "length": length,
                        "depth": depth,
                        "trial": trial,
                        "document_tokens": document.num_tokens,
                        "needle_actual_depth": needle.actual_depth,
                        "question": needle.question,
                        "code": needle.code,
                        "prediction": prediction,
                        "found": needle_found(prediction, needle.code),
                    }
                    if result.icl_fits is not None:
                        needle_end = document.spans[needle.slot][1]
                        item["icl_truncated"] = result.icl_fits[0].dropped_tokens > 0
                        item["needle_in_icl_window"] = needle_end <= len(result.icl_fits[0].context)
                    trials.append(item)
    return trials, runs


def mean_ci(values: Sequence[float], seed: int) -> dict[str, float]:
    """Count, mean and percentile-bootstrap 95% CI of the values."""
    return {"n": len(values), **mean_with_ci(values, seed)}


def qa_cells(predictions: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """F1 / EM with CIs per (method, length, position), and per (method, length) over all positions ("all")."""
    cells = []
    for method in settings.methods:
        for length in settings.lengths:
            for position in (*POSITIONS, "all"):
                items = [
                    p
                    for p in predictions
                    if p["method"] == method and p["length"] == length and position in ("all", p["position"])
                ]
                if not items:
                    continue
                cell = {"method": method, "length": length, "position": position}
                cell["f1"] = mean_ci([p["f1"] for p in items], settings.seed)
                cell["em"] = mean_ci([p["em"] for p in items], settings.seed)
                if method == "icl":
                    cell["icl_truncated_share"] = float(np.mean([p["icl_truncated"] for p in items]))
                    cell["gold_in_icl_window_share"] = float(np.mean([p["gold_in_icl_window"] for p in items]))
                cells.append(cell)
    return cells


def needle_cells(trials: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Recall with CI per (method, length, depth)."""
    cells = []
    for method in settings.methods:
        for length in settings.lengths:
            for depth in settings.depths:
                items = [t for t in trials if (t["method"], t["length"], t["depth"]) == (method, length, depth)]
                if items:
                    cell = {"method": method, "length": length, "depth": depth}
                    cell["recall"] = mean_ci([float(t["found"]) for t in items], settings.seed)
                    if method == "icl":
                        cell["needle_in_icl_window_share"] = float(np.mean([t["needle_in_icl_window"] for t in items]))
                    cells.append(cell)
    return cells


def _mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return float(np.mean(values)) if values else None


def adaptation_summary(runs: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Per (method, length), over the QA and needle documents: tokens, adaptation seconds per document, generation
    seconds per question, chunks, rank, compression error, ICL truncation."""
    summary = []
    for method in settings.methods:
        for length in settings.lengths:
            rows = [run for run in runs if run["method"] == method and run["length"] == length]
            if not rows:
                continue
            row = {
                "method": method,
                "length": length,
                "documents": len(rows),
                "document_tokens_mean": _mean_of(rows, "document_tokens"),
                "adapt_seconds_per_document": _mean_of(rows, "adapt_seconds"),
                "generate_seconds_per_question": _mean_of(rows, "generate_seconds_per_question"),
            }
            if method in SHINE_METHODS:
                row["num_chunks_mean"] = _mean_of(rows, "num_chunks")
                row["num_chunks_max"] = max(run["num_chunks"] for run in rows)
                row["rank_max"] = max(run["rank"] for run in rows)
                row["compressed_documents"] = sum(run["compression_error"] is not None for run in rows)
                row["compression_error_mean"] = _mean_of(rows, "compression_error")
            if method == "icl":
                prompts = sum(run["questions"] for run in rows)
                row["icl_truncated_share"] = sum(run["icl_truncated_prompts"] for run in rows) / prompts
                row["icl_dropped_tokens_mean"] = _mean_of(rows, "icl_dropped_tokens_mean")
            summary.append(row)
    return summary
