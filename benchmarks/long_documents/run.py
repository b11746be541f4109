"""Long-document benchmark: does SHINE answer questions about the start, middle and end of a long document?

    python benchmarks/long_documents/run.py --squad_dev squad/dev.jsonl --device auto --output_dir runs/long-docs
    python benchmarks/long_documents/run.py --quick --squad_dev tiny.jsonl --output_dir /tmp/long   # smoke test

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

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable (benchmarks.common)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# ruff: noqa: E402
import argparse
import bisect
import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from benchmarks.common import (
    Subject,
    add_run_arguments,
    log2_axis,
    machine_info,
    markdown_table,
    max_positions,
    subject_on_device,
    write_results,
)
from peft_shine.evaluation import (
    EvalSettings,
    Record,
    exact_match,
    f1,
    group_by_context,
    load_eval_records,
    mean_with_ci,
    run_icl,
    run_none,
    timed,
)
from peft_shine.tokenization import encode_plain, icl_prompt, question_prompt_ids

POSITIONS = ("first", "middle", "last")
METHODS = ("none", "icl", "shine_chunked", "shine_compressed")
SHINE_METHODS = ("shine_chunked", "shine_compressed")
SEPARATOR = "\n\n"
NEEDLE_TEMPLATE = "The secret code of the {name} archive is {code}."
NEEDLE_QUESTION = "What is the secret code of the {name} archive?"
NEEDLE_NAMES = (
    "Albrecht",
    "Baltimore",
    "Corvina",
    "Delmont",
    "Esperanza",
    "Falkirk",
    "Grimsby",
    "Halvard",
    "Isolde",
    "Juniper",
    "Kestrel",
    "Lindqvist",
    "Marigold",
    "Northwind",
    "Ostrava",
    "Pemberton",
)


@dataclass(frozen=True)
class Settings:
    """What is measured. `max_context_tokens` None = the adapter config's chunk size; `icl_max_tokens` None = the
    base's `max_position_embeddings`."""

    lengths: tuple[int, ...] = (1024, 2048, 4096, 8192)
    questions_per_position: int = 10
    documents_per_length: int = 3
    needle_trials: int = 5  # fresh documents per (length, depth)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    methods: tuple[str, ...] = METHODS
    max_rank: int = 64
    max_context_tokens: int | None = None
    chunk_combination: str = "mean"
    icl_max_tokens: int | None = None
    max_new_tokens: int = 32
    batch_size: int = 8
    seed: int = 0


QUICK = Settings(lengths=(64, 128), questions_per_position=1, documents_per_length=1, needle_trials=1, max_new_tokens=8)


@dataclass(frozen=True)
class Bench:
    """One run: the model under test, its settings, the device and the resolved ICL token limit (None: no limit)."""

    subject: Subject
    settings: Settings
    device: torch.device
    icl_limit: int | None

    @property
    def model(self) -> PeftModel:
        return self.subject.model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.subject.tokenizer


# ----------------------------------------------------------------------------------------------------------------------
# Documents


@dataclass(frozen=True)
class Corpus:
    """Distinct SQuAD paragraphs, their plain-text token counts and the questions written for each."""

    paragraphs: list[str]
    token_counts: list[int]
    questions: list[list[Record]]
    separator_tokens: int


def load_corpus(path: str | Path, tokenizer: PreTrainedTokenizerBase) -> Corpus:
    """The paragraphs of a SQuAD-style JSONL(.gz) file (records with context, question, answers), in file order."""
    records = load_eval_records(path)
    groups = group_by_context(records)
    paragraphs = [context.strip() for context in groups]
    if any(SEPARATOR in paragraph for paragraph in paragraphs):
        raise ValueError(f"{path}: a context contains a blank line; contexts must be single paragraphs.")
    return Corpus(
        paragraphs=paragraphs,
        token_counts=[len(ids) for ids in encode_plain(tokenizer, paragraphs)],
        questions=[[records[index] for index in indices] for indices in groups.values()],
        separator_tokens=len(encode_plain(tokenizer, [SEPARATOR])[0]),
    )


@dataclass(frozen=True)
class Document:
    """Paragraphs joined by blank lines. `sources[i]` is paragraph i's corpus index (None for the needle); `spans` its
    character span in `text`; `token_ends` the end character of every token of `text` (tokenised as SHINE reads it)."""

    text: str
    sources: list[int | None]
    spans: list[tuple[int, int]]
    token_ends: list[int]

    @property
    def num_tokens(self) -> int:
        return len(self.token_ends)

    def token_index(self, char: int) -> int:
        """Index of the token holding character `char` (the number of tokens that end at or before it)."""
        return bisect.bisect_right(self.token_ends, char)

    def centre_fraction(self, slot: int) -> float:
        """Where paragraph `slot`'s centre lies in the document, as a fraction of its tokens."""
        start, end = self.spans[slot]
        return (self.token_index(start) + self.token_index(end)) / (2 * self.num_tokens)


def assemble(tokenizer: PreTrainedTokenizerBase, paragraphs: Sequence[str], sources: Sequence[int | None]) -> Document:
    """Join paragraphs with `SEPARATOR` and record their spans and the token offsets of the text."""
    spans, start = [], 0
    for paragraph in paragraphs:
        spans.append((start, start + len(paragraph)))
        start += len(paragraph) + len(SEPARATOR)
    text = SEPARATOR.join(paragraphs)
    encoding = tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    return Document(text, list(sources), spans, [end for _, end in encoding["offset_mapping"]])


def build_document(
    corpus: Corpus, tokenizer: PreTrainedTokenizerBase, target_tokens: int, rng: random.Random
) -> Document:
    """A document of at most `target_tokens` tokens: paragraphs taken greedily from a seeded shuffle of the corpus
    while they fit, then shuffled again (so the short paragraphs that fill the end are not all at the end). If the
    joined text tokenises longer than the target, its shortest paragraphs are dropped until it fits."""
    order = list(range(len(corpus.paragraphs)))
    rng.shuffle(order)
    chosen: list[int] = []
    used = 0
    for index in order:
        cost = corpus.token_counts[index] + (corpus.separator_tokens if chosen else 0)
        if used + cost <= target_tokens:
            chosen.append(index)
            used += cost
    if not chosen:
        raise ValueError(f"No paragraph of the corpus fits in {target_tokens} tokens; use longer --lengths.")
    rng.shuffle(chosen)
    while True:  # tokens may merge differently across paragraph boundaries: check the joined text
        document = assemble(tokenizer, [corpus.paragraphs[i] for i in chosen], chosen)
        if document.num_tokens <= target_tokens or len(chosen) == 1:
            return document
        chosen.remove(min(chosen, key=corpus.token_counts.__getitem__))


def position_of(fraction: float) -> str:
    """ "first", "middle" or "last" third of the document."""
    return POSITIONS[min(int(fraction * 3), 2)]


def pick_questions(corpus: Corpus, document: Document, per_position: int, rng: random.Random) -> list[Record]:
    """Up to `per_position` questions per third of the document, spread over its paragraphs (round robin over the
    shuffled paragraphs of that third, each with its questions shuffled). Each record holds `position`,
    `position_fraction` and the `paragraph` slot of its gold paragraph."""
    by_position: dict[str, list[int]] = {position: [] for position in POSITIONS}
    for slot, source in enumerate(document.sources):
        if source is not None:
            by_position[position_of(document.centre_fraction(slot))].append(slot)
    picked = []
    for position, slots in by_position.items():
        rng.shuffle(slots)
        pools = {slot: list(corpus.questions[document.sources[slot]]) for slot in slots}
        for pool in pools.values():
            rng.shuffle(pool)
        chosen: list[tuple[int, Record]] = []
        for round_ in range(max((len(pool) for pool in pools.values()), default=0)):
            chosen += [(slot, pools[slot][round_]) for slot in slots if round_ < len(pools[slot])]
        for slot, record in chosen[:per_position]:
            picked.append(
                {
                    "id": record.get("id"),
                    "question": record["question"],
                    "answers": list(record["answers"]),
                    "position": position,
                    "position_fraction": document.centre_fraction(slot),
                    "paragraph": slot,
                }
            )
    return picked


@dataclass(frozen=True)
class Needle:
    """A needle sentence, its question and answer, and where it sits in its document."""

    sentence: str
    question: str
    code: str
    slot: int
    depth: float  # requested
    actual_depth: float  # haystack tokens before the needle / haystack tokens


def insert_paragraph(
    tokenizer: PreTrainedTokenizerBase, haystack: Document, paragraph: str, depth: float
) -> tuple[Document, int]:
    """The haystack with `paragraph` inserted at the paragraph boundary nearest to `depth` of its tokens (0 = before
    the first paragraph, 1 = after the last), and the inserted paragraph's slot."""
    boundaries = [0] + [haystack.token_index(start) for start, _ in haystack.spans[1:]] + [haystack.num_tokens]
    slot = min(range(len(boundaries)), key=lambda b: abs(boundaries[b] / haystack.num_tokens - depth))
    paragraphs = [haystack.text[start:end] for start, end in haystack.spans]
    document = assemble(
        tokenizer,
        paragraphs[:slot] + [paragraph] + paragraphs[slot:],
        haystack.sources[:slot] + [None] + haystack.sources[slot:],
    )
    return document, slot


def needle_document(
    corpus: Corpus, tokenizer: PreTrainedTokenizerBase, length: int, depth: float, rng: random.Random
) -> tuple[Document, Needle]:
    """A haystack of `length` tokens minus the needle's (smaller when the joined text tokenises longer), with the
    needle inserted as its own paragraph at the paragraph boundary nearest to `depth`."""
    name, code = rng.choice(NEEDLE_NAMES), str(rng.randint(1_000_000, 9_999_999))
    sentence = NEEDLE_TEMPLATE.format(name=name, code=code)
    budget = length - len(encode_plain(tokenizer, [sentence])[0]) - corpus.separator_tokens
    while True:
        haystack = build_document(corpus, tokenizer, budget, rng)
        document, slot = insert_paragraph(tokenizer, haystack, sentence, depth)
        if document.num_tokens <= length or len(haystack.sources) == 1:
            break
        budget -= document.num_tokens - length
    start, end = (document.token_index(char) for char in document.spans[slot])
    actual_depth = start / max(document.num_tokens - (end - start), 1)
    question = NEEDLE_QUESTION.format(name=name)
    return document, Needle(sentence, question, code, slot, depth, actual_depth)


def needle_found(answer: str, code: str) -> bool:
    """Whether the code appears in the answer (digit groups joined: "1,234,567" and "1 234 567" count)."""
    return code in re.sub(r"(?<=\d)[,\s](?=\d)", "", answer)


# ----------------------------------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class IclFit:
    """The document part that fits in an ICL prompt: the text, and its kept and dropped tokens."""

    context: str
    kept_tokens: int
    dropped_tokens: int


def fit_icl_context(
    tokenizer: PreTrainedTokenizerBase, document: Document, question: str, limit: int | None, answer_tokens: int
) -> IclFit:
    """The whole document when prompt + `answer_tokens` fit in `limit` tokens; else its first tokens that fit (the
    honest baseline: no knowledge of where the answer is)."""
    if limit is None:
        return IclFit(document.text, document.num_tokens, 0)
    budget = limit - answer_tokens

    def prompt_tokens(context: str) -> int:
        return len(question_prompt_ids(tokenizer, icl_prompt({"context": context, "question": question})))

    if prompt_tokens(document.text) <= budget:
        return IclFit(document.text, document.num_tokens, 0)
    keep = min(budget - prompt_tokens(""), document.num_tokens)
    while keep > 0:
        context = document.text[: document.token_ends[keep - 1]]
        if prompt_tokens(context) <= budget:
            return IclFit(context, keep, document.num_tokens - keep)
        keep -= 1
    raise ValueError(f"An ICL limit of {limit} tokens leaves no room for the document; raise --icl_max_tokens.")


@dataclass
class Answers:
    """One method's answers to a document's questions, with its timing and (SHINE) adapter or (ICL) prompt facts."""

    predictions: list[str]
    generate_seconds: float
    adapt_seconds: float = 0.0
    num_chunks: int | None = None
    rank: int | None = None
    compression_error: float | None = None
    icl_fits: list[IclFit] | None = None


@contextmanager
def shine_options(model: PeftModel, **values: Any) -> Iterator[None]:
    """Set `ShineConfig` fields (here only `max_context_tokens`, a benchmark setting) for the block and restore them."""
    config = model.base_model.shine_config
    previous = {name: getattr(config, name) for name in values}
    for name, value in values.items():
        setattr(config, name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(config, name, value)


def absorb_options(bench: Bench, method: str) -> dict[str, Any]:
    """The `absorb_context` keyword arguments a SHINE method runs with."""
    return {
        "context_overflow": "chunk",
        "chunk_combination": bench.settings.chunk_combination,
        "max_lora_rank": bench.settings.max_rank if method == "shine_compressed" else None,
    }


def answer_absorbed(bench: Bench, method: str, document: Document, questions: Sequence[str]) -> Answers:
    """Absorb the document (timed, synchronised) under the method's options, then ask the questions alone."""
    model, tokenizer, settings = bench.model, bench.tokenizer, bench.settings
    chunk_size = {} if settings.max_context_tokens is None else {"max_context_tokens": settings.max_context_tokens}
    with shine_options(model, **chunk_size):  # the chunk size is the adapter's encoder limit, not an absorb option
        absorbed, adapt_seconds = timed(
            bench.device, model.absorb_context, document.text, tokenizer=tokenizer, **absorb_options(bench, method)
        )
    predictions, generate_seconds = [], 0.0
    try:
        for start in range(0, len(questions), settings.batch_size):
            answers, seconds = timed(
                bench.device,
                model.ask,
                list(questions[start : start + settings.batch_size]),
                max_new_tokens=settings.max_new_tokens,
                tokenizer=tokenizer,
            )
            predictions += answers
            generate_seconds += seconds
    finally:
        model.forget()
    return Answers(
        predictions,
        generate_seconds,
        adapt_seconds,
        num_chunks=absorbed.num_chunks[0],
        rank=absorbed.ranks[0],
        compression_error=absorbed.compression_error,
    )


def answer(bench: Bench, method: str, document: Document, questions: Sequence[str]) -> Answers:
    """Answer `questions` about `document` with one method."""
    if method in SHINE_METHODS:
        return answer_absorbed(bench, method, document, questions)
    settings = EvalSettings(batch_size=bench.settings.batch_size, max_new_tokens=bench.settings.max_new_tokens)
    progress = tqdm(disable=True)
    if method == "none":
        run = run_none(bench.model, bench.tokenizer, [{"question": q} for q in questions], settings, progress)
        return Answers(run.predictions, run.generate_seconds)
    fits = [
        fit_icl_context(bench.tokenizer, document, q, bench.icl_limit, bench.settings.max_new_tokens) for q in questions
    ]
    records = [{"context": fit.context, "question": q} for fit, q in zip(fits, questions, strict=True)]
    run = run_icl(bench.model, bench.tokenizer, records, settings, progress)
    return Answers(run.predictions, run.generate_seconds, icl_fits=fits)


def run_record(kind: str, length: int, index: int, method: str, document: Document, result: Answers) -> dict[str, Any]:
    """What one method cost on one document: adaptation, generation, chunks, rank, compression, ICL truncation."""
    questions = len(result.predictions)
    row: dict[str, Any] = {
        "kind": kind,
        "length": length,
        "document": index,
        "method": method,
        "document_tokens": document.num_tokens,
        "questions": questions,
        "adapt_seconds": result.adapt_seconds,
        "generate_seconds_per_question": result.generate_seconds / questions,
    }
    if method in SHINE_METHODS:
        row.update(num_chunks=result.num_chunks, rank=result.rank, compression_error=result.compression_error)
    if result.icl_fits is not None:
        row["icl_truncated_prompts"] = sum(fit.dropped_tokens > 0 for fit in result.icl_fits)
        row["icl_dropped_tokens_mean"] = float(np.mean([fit.dropped_tokens for fit in result.icl_fits]))
    return row


def log(message: str) -> None:
    print(f"[long_documents] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# Benchmarks


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


# ----------------------------------------------------------------------------------------------------------------------
# Aggregation


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


# ----------------------------------------------------------------------------------------------------------------------
# Reports


def _percent_ci(summary: dict[str, float] | None) -> str:
    if summary is None:
        return "-"
    low, high = 100 * summary["ci_low"], 100 * summary["ci_high"]
    return f"{100 * summary['mean']:.1f} [{low:.0f}, {high:.0f}] (n={summary['n']})"


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_report(results: dict[str, Any]) -> str:
    """The results as Markdown: setup, F1 by position, adaptation cost and the needle table."""
    machine, model, settings = results["machine"], results["model"], results["settings"]
    cells = {(c["method"], c["length"], c["position"]): c for c in results["qa"]["cells"]}
    needles = {(c["method"], c["length"], c["depth"]): c for c in results["needle"]["cells"]}
    qa_rows = []
    for length in settings["lengths"]:
        for method in settings["methods"]:
            overall = cells.get((method, length, "all"))
            qa_rows.append(
                [str(length), method]
                + [_percent_ci((cells.get((method, length, p)) or {}).get("f1")) for p in POSITIONS]
                + [_percent_ci((overall or {}).get("f1")), _percent_ci((overall or {}).get("em"))]
            )
    adaptation_rows = [
        [
            str(row["length"]),
            row["method"],
            str(row["documents"]),
            _number(row["document_tokens_mean"], 0),
            _number(row["adapt_seconds_per_document"], 3),
            _number(row["generate_seconds_per_question"], 3),
            _number(row.get("num_chunks_mean"), 1),
            str(row.get("rank_max", "-")),
            f"{row['compressed_documents']}/{row['documents']}, {_number(row['compression_error_mean'], 3)}"
            if "compressed_documents" in row
            else "-",
            f"{100 * row['icl_truncated_share']:.0f}%, {_number(row['icl_dropped_tokens_mean'], 0)}"
            if "icl_truncated_share" in row
            else "-",
        ]
        for row in results["adaptation"]
    ]
    needle_rows = [
        [str(length), method]
        + [
            _number(100 * needles[(method, length, depth)]["recall"]["mean"], 0)
            if (method, length, depth) in needles
            else "-"
            for depth in settings["depths"]
        ]
        for length in settings["lengths"]
        for method in settings["methods"]
    ]
    chunk_size = settings["max_context_tokens"] or model["max_context_tokens"]
    parts = [
        "# SHINE long-document benchmark\n",
        f"`{machine['command']}`\n",
        f"{machine['device_name']} ({machine['device']}), {machine['cpu_cores']} CPU cores, torch {machine['torch']}. "
        f"Model: {model['base']} + SHINE adapter {model['adapter']} ({model['dtype']}, generated LoRA rank "
        f"{model['lora_rank']} per chunk, chunks of at most {chunk_size} tokens combined by their "
        f"{settings['chunk_combination']}, {model['num_memory_tokens']} memory "
        f"tokens, max_position_embeddings {model['max_position_embeddings']}). Data: {results['data']['squad_dev']} "
        f"({results['data']['paragraphs']} paragraphs). ICL prompt + answer limit: {results['icl_limit']} tokens "
        f"(longer prompts keep the first document tokens that fit). shine_compressed: rank budget "
        f"{settings['max_rank']} (no compression happens when chunks x rank <= budget). Greedy answers of at most "
        f"{settings['max_new_tokens']} tokens; seed {settings['seed']}.\n",
        "## QA F1 by position of the gold paragraph\n",
        "Concatenated SQuAD dev paragraphs; F1 % [95% bootstrap CI] (n questions) by the third of the document that "
        "holds the centre of the question's gold paragraph.\n",
        markdown_table(["length", "method", "first F1", "middle F1", "last F1", "all F1", "all EM"], qa_rows),
        "## Adaptation cost, chunks, rank, truncation\n",
        "Means over the QA and needle documents of each length. Adapt = `absorb_context` (encode every chunk + "
        "hypernetwork + SVD when compressing), synchronised; ICL has none (its cost is in the generation).\n",
        markdown_table(
            [
                "length",
                "method",
                "docs",
                "tokens",
                "adapt s/doc",
                "gen s/question",
                "chunks",
                "rank",
                "compressed, rel. error",
                "ICL truncated, dropped tokens",
            ],
            adaptation_rows,
        ),
        "## Needle in a haystack\n",
        f"Recall % (the 7-digit code appears in the answer), {settings['needle_trials']} trial(s) per cell, by the "
        "depth at which the needle paragraph is inserted.\n",
        markdown_table(["length", "method"] + [f"{100 * depth:.0f}%" for depth in settings["depths"]], needle_rows),
    ]
    return "\n".join(parts)


def _heatmap(axis: Any, values: np.ndarray, rows: list[str], columns: list[str], title: str) -> Any:
    """Values in [0, 1] as a 0-100 heatmap with annotated cells (NaN: not measured)."""
    image = axis.imshow(100 * values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(columns)), columns)
    axis.set_yticks(range(len(rows)), rows)
    for (i, j), value in np.ndenumerate(values):
        label = "-" if np.isnan(value) else f"{100 * value:.0f}"
        color = "white" if np.isnan(value) or value < 0.6 else "black"
        axis.text(j, i, label, ha="center", va="center", color=color, fontsize=9)
    axis.set_title(title)
    return image


def plot_f1_by_position(results: dict[str, Any], path: Path) -> None:
    """One F1 heatmap (position x length) per method, and F1 over all positions against length."""
    settings = results["settings"]
    methods, lengths = settings["methods"], settings["lengths"]
    cells = {(c["method"], c["length"], c["position"]): c["f1"] for c in results["qa"]["cells"]}
    figure = Figure(figsize=(3.6 * (len(methods) + 1), 3.6), layout="constrained")
    axes = figure.subplots(1, len(methods) + 1, squeeze=False)[0]
    image = None
    for axis, method in zip(axes, methods):
        values = np.array(
            [[cells[(method, n, p)]["mean"] if (method, n, p) in cells else np.nan for n in lengths] for p in POSITIONS]
        )
        image = _heatmap(axis, values, list(POSITIONS), [str(n) for n in lengths], f"{method}: F1 %")
        axis.set_xlabel("document tokens")
    if image is not None:
        figure.colorbar(image, ax=list(axes[:-1]), shrink=0.8)
    line = axes[-1]
    for method in methods:
        present = [n for n in lengths if (method, n, "all") in cells]
        means = np.array([100 * cells[(method, n, "all")]["mean"] for n in present])
        errors = np.array(
            [
                [100 * (cells[(method, n, "all")]["mean"] - cells[(method, n, "all")]["ci_low"]) for n in present],
                [100 * (cells[(method, n, "all")]["ci_high"] - cells[(method, n, "all")]["mean"]) for n in present],
            ]
        )
        line.errorbar(present, means, yerr=errors, marker="o", capsize=3, label=method)
    log2_axis(line, lengths, "document tokens")
    line.set(ylabel="F1 % (95% CI)", title="All positions", ylim=(-2, 102))
    line.legend(fontsize=8)
    figure.savefig(path, dpi=120)


def plot_needle(results: dict[str, Any], path: Path) -> None:
    """One recall heatmap (depth x length) per method."""
    settings = results["settings"]
    methods, lengths, depths = settings["methods"], settings["lengths"], settings["depths"]
    cells = {(c["method"], c["length"], c["depth"]): c["recall"]["mean"] for c in results["needle"]["cells"]}
    figure = Figure(figsize=(3.6 * len(methods) + 1, 3.6), layout="constrained")
    axes = figure.subplots(1, len(methods), squeeze=False)[0]
    image = None
    for axis, method in zip(axes, methods):
        values = np.array([[cells.get((method, n, d), np.nan) for n in lengths] for d in depths])
        image = _heatmap(
            axis, values, [f"{100 * d:.0f}%" for d in depths], [str(n) for n in lengths], f"{method}: recall %"
        )
        axis.set(xlabel="document tokens", ylabel="needle depth")
    if image is not None:
        figure.colorbar(image, ax=list(axes), shrink=0.8)
    figure.savefig(path, dpi=120)


def write_outputs(results: dict[str, Any], output_dir: Path) -> None:
    """`results.json`, `results.md`, `f1_by_position.png` and `needle.png` in `output_dir`."""
    write_results(results, markdown_report(results), output_dir)
    plot_f1_by_position(results, output_dir / "f1_by_position.png")
    plot_needle(results, output_dir / "needle.png")


# ----------------------------------------------------------------------------------------------------------------------
# Command line


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
