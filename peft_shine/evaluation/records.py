"""Evaluation records: read and validated by the QA-record loader training uses too (`peft_shine.qa_records`),
optionally a seeded sample; grouped by context; taken in batches."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..qa_records import load_qa_records

Record = dict[str, Any]
T = TypeVar("T")


def load_eval_records(path: str | Path, limit: int | None = None, seed: int = 0) -> list[Record]:
    """Records from a JSONL or JSONL.gz file (see `peft_shine.qa_records.load_qa_records`). With `limit`, a seeded
    random sample of that many records, kept in file order."""
    records = load_qa_records(Path(path))
    if limit is None or limit >= len(records):
        return records
    if limit < 1:
        raise ValueError(f"limit must be a positive number of records, got {limit}.")
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def group_by_context(records: Sequence[Record]) -> dict[str, list[int]]:
    """Distinct contexts (in order of first appearance) -> indices of the records that ask about them."""
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record["context"], []).append(index)
    return groups


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of `items` of `size` (the last one shorter)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
