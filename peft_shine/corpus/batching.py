"""Batched absorption of many documents: a batch plan that keeps padding small, and the loop that absorbs planned
batches and hands back one `AbsorbedContext` per document.

The plan depends only on the documents' token counts, the batch size and the window, never on the number of
processes or on which documents are already finished, so every process of a distributed run, and every rerun after
an interruption, computes each batch exactly as an uninterrupted single-process run does (bit-identical adapters).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from ..absorbed import AbsorbedContext
from ..model import ShineModel
from ..options import AbsorbOptions
from ..tokenization import encode_plain
from .records import Document

DEFAULT_WINDOW_BATCHES = 16  # default window: this many batches of documents are sorted by length together
DEFAULT_BATCH_SIZE = {"cpu": 1, "other": 8}  # on CPU batching measured no faster (benchmarks/corpus/README.md)


def shine_model_of(model: PeftModel | ShineModel) -> ShineModel:
    """The `ShineModel` tuner of a SHINE `PeftModel` (or the tuner itself)."""
    tuner = model.base_model if isinstance(model, PeftModel) else model
    if not isinstance(tuner, ShineModel):
        raise TypeError(f"Expected a SHINE model (PeftModel with a SHINE adapter), got {type(model).__name__}.")
    return tuner


def default_batch_size(model: PeftModel | ShineModel) -> int:
    """Documents per batch when none is given: 1 on CPU (batching measured no faster there, and unbatched adapters
    are bit-identical to lone absorbs), 8 on an accelerator."""
    device = next(shine_model_of(model).model.parameters()).device
    return DEFAULT_BATCH_SIZE["cpu" if device.type == "cpu" else "other"]


def plan_batches(token_counts: Sequence[int], batch_size: int, window: int | None = None) -> list[list[int]]:
    """Batches of document positions: each window of `window` consecutive documents (default
    `DEFAULT_WINDOW_BATCHES * batch_size`) is sorted by token count (ties in input order) and cut into batches of
    `batch_size`, so the documents of a batch have similar lengths and left padding stays small.

    Args:
        token_counts: (N,) tokens of each document.
    Returns:
        batches of positions in [0, N); every position appears exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    window = window or DEFAULT_WINDOW_BATCHES * batch_size
    if window < batch_size:
        raise ValueError(f"window ({window}) must hold at least one batch ({batch_size} documents).")
    batches = []
    for start in range(0, len(token_counts), window):
        order = sorted(range(start, min(start + window, len(token_counts))), key=lambda i: (token_counts[i], i))
        batches.extend(order[i : i + batch_size] for i in range(0, len(order), batch_size))
    return batches


def padding_share(token_counts: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions when every batch is left-padded to its longest document (0 = no padding)."""
    padded = sum(max(token_counts[i] for i in batch) * len(batch) for batch in batches)
    return 1.0 - sum(token_counts) / padded if padded else 0.0


def count_tokens(documents: Sequence[Document], tokenizer: PreTrainedTokenizerBase, step: int = 512) -> list[int]:
    """(N,) plain-text token counts of the documents (as `absorb_context` encodes them, before chunking)."""
    counts: list[int] = []
    for start in range(0, len(documents), step):
        counts.extend(map(len, encode_plain(tokenizer, [d.text for d in documents[start : start + step]])))
    return counts


@dataclass
class AbsorbedDocument:
    """One absorbed document: its adapter (a single context, at its own rank) and its share of the batch time."""

    document: Document
    absorbed: AbsorbedContext
    seconds: float


def iter_absorbed(
    model: PeftModel | ShineModel,
    documents: Sequence[Document],
    *,
    batch_size: int | None = None,
    window: int | None = None,
    options: AbsorbOptions | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    batches: Sequence[Sequence[int]] | None = None,
    wanted: set[int] | None = None,
) -> Iterator[AbsorbedDocument]:
    """Absorb `documents` in planned batches and yield each one's adapter.

    Each adapter is what `model.absorb_context(document.text, options=options)` alone returns (compressed to the
    options' `max_lora_rank` per document, exactly as a lone absorb would). With `batch_size` 1 (the default on CPU,
    see `default_batch_size`) it is bit-identical. In a larger batch, the left padding of shorter documents changes
    the shapes of the encode pass's matmuls and so the float rounding: measured, at most 2e-8 on the tiny test model,
    and on the shipped default a relative update error ||D_batched - D_alone|| / ||D_alone|| of about 1e-4
    (benchmarks/corpus/README.md); a document that needs no padding in its batch comes out bit-identical.

    Args:
        batches: the batch plan (positions into `documents`); default `plan_batches` over all documents.
        wanted: positions to yield; a batch none of whose documents is wanted is not computed, a batch with some
            is computed whole (so the wanted ones come out exactly as in a full run).
    The model's current context is restored afterwards.
    """
    shine = shine_model_of(model)
    tokenizer = shine.resolve_tokenizer(tokenizer)
    chosen = shine.absorb_options(options)
    full_rank = chosen.with_overrides(max_lora_rank=None)  # compressed per document below, not per batch
    if batches is None:
        batch_size = batch_size or default_batch_size(shine)
        batches = plan_batches(count_tokens(documents, tokenizer), batch_size, window)
    previous = shine.current_context
    try:
        for batch in batches:
            if wanted is not None and not any(i in wanted for i in batch):
                continue
            start = time.perf_counter()
            absorbed = shine.absorb_context([documents[i].text for i in batch], tokenizer, options=full_rank)
            seconds = (time.perf_counter() - start) / len(batch)
            for row, position in enumerate(batch):
                if wanted is not None and position not in wanted:
                    continue
                yield AbsorbedDocument(documents[position], absorbed[row].within_rank(chosen.max_lora_rank), seconds)
    finally:
        shine.use_context(previous)
