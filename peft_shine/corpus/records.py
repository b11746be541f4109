"""Corpus records: read (id, text) documents from JSON Lines (optionally .gz), a `datasets` folder, a Hub dataset or
Python records, and validate every record before anything is absorbed.

A bad record (a line that is not UTF-8 or not a JSON object, a missing or empty text, a missing, unusable or
duplicate id) either stops the run with an error naming the file and line (`on_error="stop"`) or is set aside as a
`SkippedRecord` with its reason (`on_error="skip"`). The whole corpus is validated first, so a stopped run has
written nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..qa_records import require_text
from ..sources import (
    dataset_split,
    file_kind,
    is_dataset_folder,
    is_hf_dataset,
    iter_rows,
    jsonl_lines,
    looks_like_a_path,
)
from .storage import INDEX, MANIFEST, SHARD_DIR

MAX_ID_BYTES = 200  # a document id becomes a folder name (filesystems allow 255 bytes)
ON_ERROR_CHOICES = ("stop", "skip")


class CorpusRecordError(ValueError):
    """A corpus record that cannot be absorbed; the message starts with "<file>, line <n>:" (or "dataset row <i>:",
    "record <i>:")."""


@dataclass(frozen=True)
class Document:
    """One document to absorb.

    Attributes:
        id: the record's id as a string (a safe folder name: no "/", "\\", NUL, no leading ".").
        text: the text, never empty.
        where: where the record came from, e.g. "docs.jsonl, line 12" or "dataset row 3".
        sha256: hex SHA-256 of the UTF-8 text; a rerun skips documents whose finished adapter has the same hash.
    """

    id: str
    text: str
    where: str
    sha256: str


@dataclass(frozen=True)
class SkippedRecord:
    """A record left out under `on_error="skip"`: its id when one could be read (else None), location and reason."""

    id: str | None
    where: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        """The index line of a skipped record."""
        return {"id": self.id, "status": "skipped", "where": self.where, "reason": self.reason}


def text_sha256(text: str) -> str:
    """Hex SHA-256 of the UTF-8 encoding of `text`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_id(value: Any, field: str, where: str) -> str:
    """The record id as a string usable as a folder name; CorpusRecordError otherwise. Integers are accepted."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        found = "missing" if value is None else f"a {type(value).__name__}, not a string or integer"
        raise CorpusRecordError(f"{where}: id field {field!r} is {found}.")
    doc_id = str(value)
    problem = None
    if not doc_id.strip():
        problem = "is empty"
    elif doc_id in (INDEX, MANIFEST, SHARD_DIR):
        problem = "is a name the output folder uses itself"
    elif doc_id.startswith("."):
        problem = "starts with '.' (reserved for temporary files)"
    elif any(c in doc_id for c in "/\\\0"):
        problem = "contains '/', '\\' or NUL (it becomes a folder name)"
    elif len(doc_id.encode("utf-8")) > MAX_ID_BYTES:
        problem = f"is longer than {MAX_ID_BYTES} bytes"
    if problem:
        raise CorpusRecordError(f"{where}: id {doc_id[:80]!r} {problem}.")
    return doc_id


def iter_raw_records(source: Any, split: str | None = None) -> Iterator[tuple[str, dict | ValueError]]:
    """(location, record or error) from `source`: a .jsonl / .jsonl.gz path, a `datasets` folder (load_from_disk), a
    Hub dataset id (`datasets.load_dataset(source, split=split)`), a `datasets.Dataset`, or an iterable of dicts."""
    if is_hf_dataset(source):
        yield from iter_rows(source)
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if is_dataset_folder(path):
            import datasets

            yield from iter_rows(dataset_split(datasets.load_from_disk(str(path)), split, str(path)))
        elif path.is_file():
            if file_kind(path) != "jsonl":
                raise ValueError(f"{path}: a corpus file must be JSON Lines (.jsonl or .jsonl.gz).")
            yield from jsonl_lines(path)
        elif path.exists() or looks_like_a_path(str(source)):
            raise FileNotFoundError(f"{source}: no such JSON Lines file or `datasets` folder.")
        else:
            import datasets

            hub = datasets.load_dataset(str(source), split=split)
            yield from iter_rows(dataset_split(hub, split, str(source)))
        return
    for index, record in enumerate(source):
        where = f"record {index}"
        yield (
            where,
            record
            if isinstance(record, dict)
            else CorpusRecordError(f"{where}: expected a dict, got {type(record).__name__}."),
        )


def read_corpus(
    source: Any,
    *,
    text_field: str = "text",
    id_field: str = "id",
    split: str | None = None,
    on_error: str = "stop",
) -> tuple[list[Document], list[SkippedRecord]]:
    """Every document of `source` (see `iter_raw_records`), validated, in input order.

    Returns (documents, skipped). With `on_error="stop"` the first bad record raises CorpusRecordError naming its
    file and line; with `"skip"` bad records are returned in `skipped` (a duplicate id keeps its first record).
    Raises ValueError when no document is left.
    """
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}.")
    documents: list[Document] = []
    skipped: list[SkippedRecord] = []
    first_seen: dict[str, str] = {}
    for where, record in iter_raw_records(source, split):
        doc_id = None
        try:
            if isinstance(record, ValueError):
                raise CorpusRecordError(str(record))
            doc_id = check_id(record.get(id_field), id_field, where)
            if doc_id in first_seen:
                raise CorpusRecordError(f"{where}: duplicate id {doc_id!r} (first seen at {first_seen[doc_id]}).")
            try:
                text = require_text(record, text_field, where)
            except ValueError as error:
                raise CorpusRecordError(str(error)) from None
        except CorpusRecordError as error:
            if on_error == "stop":
                raise
            skipped.append(SkippedRecord(doc_id, where, str(error)))
            continue
        first_seen[doc_id] = where
        documents.append(Document(doc_id, text, where, text_sha256(text)))
    if not documents:
        raise ValueError(f"No document to absorb in {source!r} ({len(skipped)} record(s) skipped).")
    return documents, skipped
