"""Context-QA records: the one validator and loader behind training data (`peft_shine.training.data`) and evaluation
(`peft_shine.evaluation`), so both accept the same files with the same rules and messages.

A valid record has a non-empty string `context` and `question` and `answers`: a non-empty list of non-empty strings
(one string or a SQuAD-style {"text": [...]} dict is accepted and turned into that list; empty answers are dropped).
`options` (multiple choice), when present, is a non-empty list of strings. Every other field (`id`, `source`,
`supporting_facts`, `answer_kind`, ...) is kept as it is.
"""

from __future__ import annotations

from .sources import Sources, file_kind, is_hf_dataset, iter_jsonl, iter_rows, source_paths

QA_FIELDS = ("context", "question", "answers")


def require_text(record: dict, field: str, where: str) -> str:
    """The non-empty string in `record[field]`; ValueError naming the location otherwise."""
    value = record.get(field)
    if not isinstance(value, str):
        found = "missing" if field not in record else f"a {type(value).__name__}, not a string"
        raise ValueError(f"{where}: field {field!r} is {found} (fields present: {sorted(record)}).")
    if not value.strip():
        raise ValueError(f"{where}: field {field!r} is empty.")
    return value


def require_answers(record: dict, field: str, where: str) -> list[str]:
    """The answers as a non-empty list of non-empty strings. Accepts a list of str, one str, or a SQuAD-style dict
    with a "text" list."""
    value = record.get(field)
    if isinstance(value, dict):
        value = value.get("text")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, str) for a in value):
        raise ValueError(f"{where}: field {field!r} must be a list of answer strings, got {value!r}.")
    answers = [a for a in value if a.strip()]
    if not answers:
        raise ValueError(f"{where}: field {field!r} has no non-empty answer (unanswerable questions are unsupported).")
    return answers


def _check_options(record: dict, where: str) -> None:
    """Raise ValueError unless a present `options` field is a non-empty list of strings."""
    options = record.get("options")
    if "options" in record and not (isinstance(options, list) and options and all(isinstance(o, str) for o in options)):
        raise ValueError(f"{where}: field 'options' must be a non-empty list of strings, got {options!r}.")


def validate_qa_record(record: dict, where: str = "record", fields: tuple[str, str, str] = QA_FIELDS) -> dict:
    """The record with the keys "context", "question", "answers" (list of str) plus every other field of the input;
    ValueError starting with `where` for a record that breaks the rules above. `fields` names the input's context /
    question / answers fields."""
    context_field, question_field, answers_field = fields
    _check_options(record, where)
    extra = {key: value for key, value in record.items() if key not in fields}
    return {
        **extra,
        "context": require_text(record, context_field, where),
        "question": require_text(record, question_field, where),
        "answers": require_answers(record, answers_field, where),
    }


def load_qa_records(
    sources: Sources, context_field: str = "context", question_field: str = "question", answers_field: str = "answers"
) -> list[dict]:
    """Context-QA records (see `validate_qa_record`) from JSON Lines files (optionally .gz; one path, a
    comma-separated string of paths or a list) or a `datasets.Dataset`. Raises ValueError naming the file and line of
    a malformed record or a missing field, and when nothing is found."""
    fields = (context_field, question_field, answers_field)
    if is_hf_dataset(sources):
        rows = iter_rows(sources)
    else:
        paths = source_paths(sources)
        for path in paths:
            if file_kind(path) != "jsonl":
                raise ValueError(f"{path}: QA records must be JSON Lines (.jsonl or .jsonl.gz).")
        rows = (item for path in paths for item in iter_jsonl(path))
    records = [validate_qa_record(record, where, fields) for where, record in rows]
    if not records:
        raise ValueError(f"No QA records found in {sources!r}: the files are empty.")
    return records
