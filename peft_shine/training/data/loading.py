"""Training inputs from files or a `datasets.Dataset`: pretraining texts (`load_texts`) and context-QA records grouped
by context for multi-QA examples (`group_by_context`). QA records are read and validated by
`peft_shine.qa_records.load_qa_records`, the loader evaluation uses too."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ...qa_records import require_text
from ...sources import Sources, file_kind, is_hf_dataset, iter_jsonl, iter_rows, open_text, source_paths

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def _texts_of_txt(path: Path, split_paragraphs: bool) -> list[str]:
    """The documents of a .txt file: the whole file, or its blank-line separated paragraphs; blank ones dropped."""
    with open_text(path) as handle:
        text = handle.read()
    parts = _PARAGRAPH_BREAK.split(text) if split_paragraphs else [text]
    return [part.strip() for part in parts if part.strip()]


def load_texts(sources: Sources, text_field: str = "text", split_paragraphs: bool = False) -> list[str]:
    """Pretraining texts from JSON Lines files (`text_field` of every record), .txt files (one document per file, or
    one per blank-line separated paragraph with `split_paragraphs=True`), any of them gzip-compressed, or from the
    `text_field` column of a `datasets.Dataset`. `sources` is one path, a comma-separated string of paths, a list of
    paths, or a Dataset. Raises ValueError naming the file and line of a malformed record, and when nothing is found."""
    if is_hf_dataset(sources):
        texts = [require_text(row, text_field, where) for where, row in iter_rows(sources)]
    else:
        texts = []
        for path in source_paths(sources):
            if file_kind(path) == "txt":
                texts.extend(_texts_of_txt(path, split_paragraphs))
            else:
                texts.extend(require_text(record, text_field, where) for where, record in iter_jsonl(path))
    if not texts:
        raise ValueError(f"No texts found in {sources!r}: the files are empty or hold only blank text.")
    return texts


def group_by_context(records: Sequence[dict]) -> list[dict]:
    """Group QA records that share a context, in order of first appearance. Each group is
    {"context": str, "qas": [(question, answers), ...]} and, when every record of the group has `supporting_facts`,
    also "supporting_facts": [one index list per qa] for the curriculum."""
    groups: dict[str, dict] = {}
    for record in records:
        group = groups.setdefault(record["context"], {"context": record["context"], "qas": [], "facts": []})
        group["qas"].append((record["question"], list(record["answers"])))
        group["facts"].append(record.get("supporting_facts"))
    return [_finish_group(group) for group in groups.values()]


def _finish_group(group: dict) -> dict:
    """Keep the per-qa supporting facts only when every qa has them."""
    facts = group.pop("facts")
    if all(f is not None for f in facts):
        group["supporting_facts"] = facts
    return group
