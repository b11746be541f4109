"""The long-document benchmark's settings and its four methods of answering questions about a document: `none`,
`icl` (the document in the prompt, cut to the ICL limit), `shine_chunked` and `shine_compressed` (`absorb_context`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from benchmarks.common import Subject
from benchmarks.long_documents.documents import Document
from peft_shine.evaluation import EvalSettings, run_icl, run_none, timed
from peft_shine.options import AbsorbOptions
from peft_shine.tokenization import icl_prompt, question_prompt_ids

METHODS = ("none", "icl", "shine_chunked", "shine_compressed")
SHINE_METHODS = ("shine_chunked", "shine_compressed")


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


def absorb_options(bench: Bench, method: str) -> AbsorbOptions:
    """The absorb options a SHINE method runs with (the chunk size: the benchmark's, default the adapter's)."""
    return AbsorbOptions().with_overrides(
        max_context_tokens=bench.settings.max_context_tokens,
        context_overflow="chunk",
        chunk_combination=bench.settings.chunk_combination,
        max_lora_rank=bench.settings.max_rank if method == "shine_compressed" else None,
    )


def answer_absorbed(bench: Bench, method: str, document: Document, questions: Sequence[str]) -> Answers:
    """Absorb the document (timed, synchronised) under the method's options, then ask the questions alone."""
    model, tokenizer, settings = bench.model, bench.tokenizer, bench.settings
    absorbed, adapt_seconds = timed(
        bench.device, model.absorb_context, document.text, tokenizer=tokenizer, options=absorb_options(bench, method)
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
