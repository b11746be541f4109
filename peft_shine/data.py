"""Training data for SHINE: loaders, the stage-1 (RECON / COMP pretraining) and stage-2 (multi-QA, single-QA with
distractors) example builders, a context-length curriculum, torch datasets for `transformers.Trainer`, and the
collator that pads answering passes (right) and contexts (left) into one batch.

An example is a dict of python int lists: `input_ids` (L,) and `labels` (L,) for the answering pass (a chat whose
assistant turns are the targets; every other position is -100) and `context_input_ids` (T,) for the evidence the
hypernetwork reads, plus a string `kind` for logging. The collator turns a list of them into (B, L) and (B, T) tensors.
For the optional distillation objective (`peft_shine.distillation`) a stage-2 example also carries
`teacher_input_ids` / `teacher_labels` (L_t,): the same chat with the evidence in the first user turn.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, Union

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from .padding import left_pad, pad_id_of, right_pad
from .tokenization import (
    as_text_list,
    encode_plain,
    fit_context_lengths,
    icl_prompt,
    question_prompt_ids,
    sentence_spans,
)

if TYPE_CHECKING:
    import datasets

IGNORE_INDEX = -100
RECON_INSTRUCTION = "Repeat the text you have read."
COMP_INSTRUCTION = "Continue the text you have read, from its beginning to the end."
PACK_SEPARATOR = "\n\n"
DISTRACTOR_SEPARATOR = "\n\n"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

Sources = Union[str, os.PathLike, Sequence[str | os.PathLike], "datasets.Dataset"]
QA = tuple[str, Sequence[str]]


# ----------------------------------------------------------------------------------------------------------------------
# Loading


def _is_hf_dataset(obj: Any) -> bool:
    """True for a `datasets.Dataset`. The optional `datasets` package is not imported here: a Dataset can only exist
    once it has been."""
    module = sys.modules.get("datasets")
    return module is not None and isinstance(obj, module.Dataset)


def _source_paths(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Paths from one path, a comma-separated string of paths, or a list of paths."""
    if isinstance(sources, os.PathLike):
        sources = [sources]
    elif isinstance(sources, str):
        sources = [sources] if Path(sources).exists() else sources.split(",")
    paths = [Path(str(source).strip()) for source in sources if str(source).strip()]
    if not paths:
        raise ValueError("No data source given: pass a file path, a comma-separated string of paths, or a list.")
    return paths


def _file_kind(path: Path) -> str:
    """The kind, "jsonl" or "txt", from the file name (a trailing .gz is allowed); ValueError for anything else."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in (".jsonl", ".txt"):
        return suffixes[-1][1:]
    raise ValueError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz, .txt or .txt.gz.")


def _open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file for reading, decompressing .gz files."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield (location, record) for every non-blank line of a JSON Lines file; location reads "<path>, line <n>"."""
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error.msg}).") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
            yield where, record


def _iter_rows(dataset: datasets.Dataset) -> Iterator[tuple[str, dict]]:
    """Yield (location, row) for every row of a `datasets.Dataset`."""
    for index, row in enumerate(dataset):
        yield f"dataset row {index}", row


def _require_text(record: dict, field: str, where: str) -> str:
    """The non-empty string in `record[field]`; ValueError naming the location otherwise."""
    value = record.get(field)
    if not isinstance(value, str):
        found = "missing" if field not in record else f"a {type(value).__name__}, not a string"
        raise ValueError(f"{where}: field {field!r} is {found} (fields present: {sorted(record)}).")
    if not value.strip():
        raise ValueError(f"{where}: field {field!r} is empty.")
    return value


def _require_answers(record: dict, field: str, where: str) -> list[str]:
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


def _texts_of_txt(path: Path, split_paragraphs: bool) -> list[str]:
    """The documents of a .txt file: the whole file, or its blank-line separated paragraphs; blank ones dropped."""
    with _open_text(path) as handle:
        text = handle.read()
    parts = _PARAGRAPH_BREAK.split(text) if split_paragraphs else [text]
    return [part.strip() for part in parts if part.strip()]


def load_texts(sources: Sources, text_field: str = "text", split_paragraphs: bool = False) -> list[str]:
    """Pretraining texts from JSON Lines files (`text_field` of every record), .txt files (one document per file, or
    one per blank-line separated paragraph with `split_paragraphs=True`), any of them gzip-compressed, or from the
    `text_field` column of a `datasets.Dataset`. `sources` is one path, a comma-separated string of paths, a list of
    paths, or a Dataset. Raises ValueError naming the file and line of a malformed record, and when nothing is found."""
    if _is_hf_dataset(sources):
        texts = [_require_text(row, text_field, where) for where, row in _iter_rows(sources)]
    else:
        texts = []
        for path in _source_paths(sources):
            if _file_kind(path) == "txt":
                texts.extend(_texts_of_txt(path, split_paragraphs))
            else:
                texts.extend(_require_text(record, text_field, where) for where, record in _iter_jsonl(path))
    if not texts:
        raise ValueError(f"No texts found in {sources!r}: the files are empty or hold only blank text.")
    return texts


def _normalize_qa_record(
    record: dict, where: str, fields: tuple[str, str, str] = ("context", "question", "answers")
) -> dict:
    """A QA record with the keys "context", "question", "answers" (list of str) plus every other field of the input
    (e.g. `source`, `task`, `supporting_facts`). `fields` names the input's context / question / answers fields."""
    context_field, question_field, answers_field = fields
    extra = {key: value for key, value in record.items() if key not in fields}
    return {
        **extra,
        "context": _require_text(record, context_field, where),
        "question": _require_text(record, question_field, where),
        "answers": _require_answers(record, answers_field, where),
    }


def load_qa_records(
    sources: Sources, context_field: str = "context", question_field: str = "question", answers_field: str = "answers"
) -> list[dict]:
    """Context-QA records from JSON Lines files (optionally .gz) or a `datasets.Dataset`. Each record comes back with
    the keys "context", "question", "answers" (a list of str; a single str or a SQuAD-style {"text": [...]} dict is
    accepted) and keeps its other fields. Raises ValueError naming the file and line of a malformed record or a
    missing field, and when nothing is found."""
    fields = (context_field, question_field, answers_field)
    if _is_hf_dataset(sources):
        rows = _iter_rows(sources)
    else:
        paths = _source_paths(sources)
        for path in paths:
            if _file_kind(path) != "jsonl":
                raise ValueError(f"{path}: QA records must be JSON Lines (.jsonl or .jsonl.gz).")
        rows = (item for path in paths for item in _iter_jsonl(path))
    records = [_normalize_qa_record(record, where, fields) for where, record in rows]
    if not records:
        raise ValueError(f"No QA records found in {sources!r}: the files are empty.")
    return records


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


# ----------------------------------------------------------------------------------------------------------------------
# Chat encoding with answer-only labels


def _chat_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    """Chat-template token ids of `messages`."""
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
    )
    return list(ids)


def _check_extends(prefix: list[int], ids: list[int], what: str) -> None:
    """Raise unless `ids` starts with `prefix` (the chat template must render a conversation prefix-consistently)."""
    if ids[: len(prefix)] != prefix:
        raise ValueError(
            f"The chat template is not prefix-consistent: {what}. Answer-only labels need a template whose rendering "
            "of a conversation starts with the rendering of every shorter conversation."
        )


def encode_chat(tokenizer: PreTrainedTokenizerBase, turns: Sequence[QA]) -> tuple[list[int], list[int]]:
    """Encode a chat of (user, assistant) turns; returns `input_ids` (L,) and `labels` (L,), where labels keep the
    tokens each assistant turn adds beyond the prompt rendered with `add_generation_prompt=True` (its content and
    end-of-turn tokens) and are -100 elsewhere. The first prompt is exactly `question_prompt_ids(tokenizer, q1)`, the
    prompt `ask()` uses. Raises ValueError for an empty turn or a template that is not prefix-consistent."""
    if not turns:
        raise ValueError("A chat example needs at least one (question, answer) turn.")
    input_ids: list[int] = []
    labels: list[int] = []
    messages: list[dict] = []
    for index, (question, answer) in enumerate(turns):
        if not question.strip() or not answer.strip():
            raise ValueError(f"Turn {index} has an empty question or answer; there would be nothing to learn.")
        messages.append({"role": "user", "content": question})
        prompt = question_prompt_ids(tokenizer, question) if index == 0 else _chat_ids(tokenizer, messages, True)
        _check_extends(input_ids, prompt, f"the prompt of turn {index} does not extend turn {index - 1}")
        messages.append({"role": "assistant", "content": answer})
        full = _chat_ids(tokenizer, messages, False)
        _check_extends(prompt, full, f"the answer of turn {index} does not extend its prompt")
        if len(full) == len(prompt):
            raise ValueError(f"The answer of turn {index} adds no tokens to the chat; there would be nothing to learn.")
        labels += [IGNORE_INDEX] * (len(prompt) - len(input_ids)) + full[len(prompt) :]
        input_ids = full
    return input_ids, labels


def _example(
    tokenizer: PreTrainedTokenizerBase, turns: Sequence[QA], evidence: str, kind: str, teacher: bool = False
) -> dict[str, list[int] | str]:
    """An example dict: the chat's `input_ids` / `labels` (L,), the evidence's `context_input_ids` (T,), `kind`; with
    `teacher`, also `teacher_input_ids` / `teacher_labels` (L_t,): the chat whose first user turn is the evidence and
    the question in `ICL_TEMPLATE` (later turns unchanged), labelling the same answer tokens."""
    input_ids, labels = encode_chat(tokenizer, turns)
    example = {
        "input_ids": input_ids,
        "labels": labels,
        "context_input_ids": encode_plain(tokenizer, [evidence])[0],
        "kind": kind,
    }
    if teacher:
        (question, answer), *later = turns
        first = (icl_prompt({"context": evidence, "question": question}), answer)
        example["teacher_input_ids"], example["teacher_labels"] = encode_chat(tokenizer, [first, *later])
    return example


# ----------------------------------------------------------------------------------------------------------------------
# Stage 1: RECON / COMP pretraining


def word_prefix(text: str, fraction: float) -> str:
    """The text up to the end of its first round(fraction * words) whitespace-separated words (at least one),
    original spacing kept."""
    ends = [match.end() for match in re.finditer(r"\S+", text)]
    if not ends:
        raise ValueError("The text has no words.")
    count = min(len(ends), max(1, round(fraction * len(ends))))
    return text[: ends[count - 1]]


def _check_fraction_range(fraction_range: tuple[float, float]) -> None:
    """Raise unless 0 < low <= high <= 1."""
    low, high = fraction_range
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"comp_fraction_range must satisfy 0 < low <= high <= 1, got {fraction_range}.")


def build_pretrain_example(
    text: str,
    tokenizer: PreTrainedTokenizerBase,
    rng: random.Random,
    comp_fraction_range: tuple[float, float] = (0.7, 0.9),
    recon_probability: float = 0.5,
) -> dict[str, list[int] | str]:
    """A stage-1 example. With probability `recon_probability` RECON (evidence = the full text, instruction
    `RECON_INSTRUCTION`), else COMP (evidence = the first fraction of the words, fraction ~ U(comp_fraction_range),
    instruction `COMP_INSTRUCTION`). The target, the assistant turn, is always the full text. `kind` is "recon" or
    "comp"."""
    _check_fraction_range(comp_fraction_range)
    if rng.random() < recon_probability:
        return _example(tokenizer, [(RECON_INSTRUCTION, text)], text, "recon")
    evidence = word_prefix(text, rng.uniform(*comp_fraction_range))
    return _example(tokenizer, [(COMP_INSTRUCTION, text)], evidence, "comp")


def pack_texts(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> list[str]:
    """Greedily join consecutive texts with "\\n\\n" while their summed plain-token count (texts plus separators)
    stays within `max_tokens`. A text longer than the budget stays alone and whole (never cut)."""
    separator_tokens = len(encode_plain(tokenizer, [PACK_SEPARATOR])[0])
    packed: list[list[str]] = []
    used = max_tokens + 1
    for text, ids in zip(texts, encode_plain(tokenizer, list(texts))):
        if packed and used + separator_tokens + len(ids) <= max_tokens:
            packed[-1].append(text)
            used += separator_tokens + len(ids)
        else:
            packed.append([text])
            used = len(ids)
    return [PACK_SEPARATOR.join(group) for group in packed]


# ----------------------------------------------------------------------------------------------------------------------
# Stage 2: context QA


def build_multi_qa_example(
    context: str, qas: Sequence[QA], tokenizer: PreTrainedTokenizerBase, teacher: bool = False
) -> dict[str, list[int] | str]:
    """A multi-QA example: evidence = `context`; the answering pass is the chat user q1, assistant a1, user q2, ...
    (each answer is the first of its answers) with loss on every answer. `kind` is "multi". `teacher`: see
    `_example`."""
    turns = [(question, answers[0]) for question, answers in qas]
    return _example(tokenizer, turns, context, "multi", teacher)


def join_with_distractors(context: str, distractors: Sequence[str], rng: random.Random) -> str:
    """The gold context and the distractors in random order, joined by "\\n\\n"."""
    parts = [context, *distractors]
    rng.shuffle(parts)
    return DISTRACTOR_SEPARATOR.join(parts)


def build_single_qa_example(
    context: str,
    question: str,
    answers: Sequence[str],
    distractors: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    rng: random.Random,
    teacher: bool = False,
) -> dict[str, list[int] | str]:
    """A single-QA example: evidence = the gold context among `distractors` in random order; one question, loss on
    its first answer. `kind` is "single". `teacher`: see `_example`."""
    evidence = join_with_distractors(context, distractors, rng)
    return _example(tokenizer, [(question, answers[0])], evidence, "single", teacher)


# ----------------------------------------------------------------------------------------------------------------------
# Context-length curriculum


def _as_group(record: dict) -> dict:
    """A QA record as a one-question group (see `group_by_context`); a group is returned unchanged."""
    if "qas" in record:
        return record
    group = {"context": record["context"], "qas": [(record["question"], record["answers"])]}
    if record.get("supporting_facts") is not None:
        group["supporting_facts"] = [record["supporting_facts"]]
    return group


def _fact_lines(context: str, facts: Sequence[Sequence[int]]) -> list[str] | None:
    """The context lines at the union of the supporting-fact indexes, in context order; None when there are none."""
    lines = context.split("\n")
    indexes = sorted({index for qa_facts in facts for index in qa_facts})
    if not indexes:
        return None
    if indexes[0] < 0 or indexes[-1] >= len(lines):
        raise ValueError(f"Supporting fact indexes {indexes} out of range for a context of {len(lines)} lines.")
    return [lines[i] for i in indexes]


def _answer_sentences(context: str, qas: Sequence[QA]) -> list[str] | None:
    """The sentences overlapping, for each qa, the first of its answers found in the context (union, in context
    order); None when some qa has no answer in the context."""
    spans = sentence_spans(context)
    chosen: set[int] = set()
    for _, answers in qas:
        answer = next((a for a in answers if a and a in context), None)
        if answer is None:
            return None
        start = context.find(answer)
        end = start + len(answer)
        chosen.update(i for i, (s, e) in enumerate(spans) if s < end and start < e)
    return [context[spans[i][0] : spans[i][1]] for i in sorted(chosen)]


def short_context(record: dict) -> str:
    """The part of the context that holds the answer(s) of a QA record or group: with `supporting_facts` (bAbI) the
    lines at those indexes, joined by "\\n"; otherwise the sentence(s) containing the first answer string found in the
    context, joined by " ". Falls back to the full context when no answer can be located."""
    group = _as_group(record)
    if group.get("supporting_facts") is not None:
        lines = _fact_lines(group["context"], group["supporting_facts"])
        return "\n".join(lines) if lines else group["context"]
    sentences = _answer_sentences(group["context"], group["qas"])
    return " ".join(sentences) if sentences else group["context"]


def curriculum_context(record: dict, progress: float, rng: random.Random) -> str:
    """The evidence under the context-length curriculum at training `progress` in [0, 1]: the short context (see
    `short_context`) with probability 1 - progress, else the full context. So training starts on answer-bearing
    sentences only and moves linearly to full contexts, which it uses exclusively from progress 1 on."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1], got {progress}.")
    if rng.random() < 1.0 - progress:
        return short_context(record)
    return record["context"]


# ----------------------------------------------------------------------------------------------------------------------
# Torch datasets and the Trainer callback


def _item_rng(seed: int, index: int) -> random.Random:
    """The random stream of one dataset item: the same for the same (seed, index)."""
    return random.Random(f"{seed}:{index}")


class PretrainDataset(Dataset):
    """Stage-1 examples (see `build_pretrain_example`), one per text; with `pack_tokens` the texts are first packed
    (see `pack_texts`). Item `i` is deterministic given `seed` and `i`."""

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        seed: int = 0,
        pack_tokens: int | None = None,
        comp_fraction_range: tuple[float, float] = (0.7, 0.9),
        recon_probability: float = 0.5,
    ) -> None:
        texts = as_text_list(texts, "text")
        _check_fraction_range(comp_fraction_range)
        self.texts = pack_texts(texts, tokenizer, pack_tokens) if pack_tokens else texts
        self.tokenizer = tokenizer
        self.seed = seed
        self.comp_fraction_range = comp_fraction_range
        self.recon_probability = recon_probability

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, list[int] | str]:
        rng = _item_rng(self.seed, index)
        return build_pretrain_example(
            self.texts[index], self.tokenizer, rng, self.comp_fraction_range, self.recon_probability
        )


class InstructDataset(Dataset):
    """Stage-2 examples from QA records. mode="multi": one item per context with all its questions (see
    `build_multi_qa_example`); mode="single": one item per record, its context hidden among `num_distractors` other
    contexts (so 1 + num_distractors contexts in all; see `build_single_qa_example`).

    With `curriculum_steps` set, the gold context follows `curriculum_context` at the current `progress`, which
    `set_progress` (or `peft_shine.training.ShineTrainingCallback`) updates; distractors stay whole. Without it
    the full context is always used. Item `i` is deterministic given `seed`, `i` and `progress`.

    With `teacher=True` every item also carries `teacher_input_ids` / `teacher_labels` for the distillation
    objective: the same chat with the very evidence the hypernetwork reads (curriculum and distractors included) in
    the first user turn (see `_example`)."""

    def __init__(
        self,
        records: Sequence[dict],
        tokenizer: PreTrainedTokenizerBase,
        mode: str = "multi",
        num_distractors: int = 0,
        curriculum_steps: int | None = None,
        seed: int = 0,
        teacher: bool = False,
    ) -> None:
        records = [_normalize_qa_record(record, f"record {i}") for i, record in enumerate(records)]
        self._check_options(mode, num_distractors, curriculum_steps, records)
        self.items = group_by_context(records) if mode == "multi" else records
        self.contexts = list(dict.fromkeys(record["context"] for record in records))
        self.tokenizer = tokenizer
        self.mode = mode
        self.num_distractors = num_distractors
        self.curriculum_steps = curriculum_steps
        self.seed = seed
        self.teacher = teacher
        self.progress = 0.0

    @staticmethod
    def _check_options(mode: str, num_distractors: int, curriculum_steps: int | None, records: list[dict]) -> None:
        """Raise ValueError for an unknown mode, distractors outside single mode, or too few distinct contexts."""
        if mode not in ("multi", "single"):
            raise ValueError(f"mode must be 'multi' or 'single', got {mode!r}.")
        if num_distractors < 0 or (mode == "multi" and num_distractors):
            raise ValueError("num_distractors must be >= 0, and 0 in mode='multi' (distractors are single-QA only).")
        if curriculum_steps is not None and curriculum_steps <= 0:
            raise ValueError(f"curriculum_steps must be a positive number of steps or None, got {curriculum_steps}.")
        if not records:
            raise ValueError("No QA records given.")
        distinct = len({record["context"] for record in records})
        if distinct <= num_distractors:
            raise ValueError(
                f"{num_distractors} distractors need at least {num_distractors + 1} distinct contexts; got {distinct}."
            )

    def set_progress(self, progress: float) -> None:
        """Set the training progress in [0, 1] that the curriculum reads."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}.")
        self.progress = progress

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int] | str]:
        rng = _item_rng(self.seed, index)
        item = self.items[index]
        context = item["context"]
        if self.curriculum_steps is not None:
            context = curriculum_context(item, self.progress, rng)
        if self.mode == "multi":
            return build_multi_qa_example(context, item["qas"], self.tokenizer, self.teacher)
        distractors = self._distractors(item["context"], rng)
        return build_single_qa_example(
            context, item["question"], item["answers"], distractors, self.tokenizer, rng, self.teacher
        )

    def _distractors(self, gold: str, rng: random.Random) -> list[str]:
        """`num_distractors` distinct contexts other than `gold`, drawn at random."""
        others = [context for context in rng.sample(self.contexts, self.num_distractors + 1) if context != gold]
        return others[: self.num_distractors]


# ----------------------------------------------------------------------------------------------------------------------
# Collator


@dataclass
class ShineDataCollator:
    """Batches examples: `input_ids` (B, L) right-padded with the tokenizer's pad id, `attention_mask` (B, L),
    `labels` (B, L) padded with -100, and `context_input_ids` / `context_attention_mask` (B, T) left-padded after the
    `context_overflow` policy (see `fit_context_lengths`: "truncate" cuts with a warning; "error" and "chunk" raise,
    since a training context is encoded in one pass) is applied with `max_context_tokens`.
    Examples with `teacher_input_ids` / `teacher_labels` (see `InstructDataset(teacher=True)`) also give
    `teacher_input_ids`, `teacher_attention_mask`, `teacher_labels` (B, L_t), right-padded like the answering pass,
    and `distill_weight` (a python float: the weight of the distillation term in `ShineModel.forward`). Other keys
    (e.g. `kind`) are dropped. One answering row per context."""

    tokenizer: PreTrainedTokenizerBase
    max_context_tokens: int = 2048
    context_overflow: str = "error"
    distill_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.context_overflow not in ("chunk", "truncate", "error"):
            raise ValueError(f"context_overflow must be 'chunk', 'truncate' or 'error', got {self.context_overflow!r}.")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight}.")

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor | float]:
        _check_features(features)
        pad_id = pad_id_of(self.tokenizer)
        input_ids, attention_mask = right_pad([f["input_ids"] for f in features], pad_id)
        labels, _ = right_pad([f["labels"] for f in features], IGNORE_INDEX)
        contexts = fit_context_lengths(
            [list(f["context_input_ids"]) for f in features], self.max_context_tokens, self.context_overflow
        )
        context_input_ids, context_attention_mask = left_pad(contexts, pad_id)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "context_input_ids": context_input_ids,
            "context_attention_mask": context_attention_mask,
        }
        if "teacher_input_ids" in features[0]:
            batch["teacher_input_ids"], batch["teacher_attention_mask"] = right_pad(
                [f["teacher_input_ids"] for f in features], pad_id
            )
            batch["teacher_labels"], _ = right_pad([f["teacher_labels"] for f in features], IGNORE_INDEX)
            batch["distill_weight"] = self.distill_weight
        return batch


def _check_features(features: list[dict]) -> None:
    """Raise ValueError for an empty batch or examples missing a key the collator needs."""
    if not features:
        raise ValueError("Cannot collate an empty list of examples.")
    missing = {"input_ids", "labels", "context_input_ids"} - set(features[0])
    if missing:
        raise ValueError(
            f"Examples lack {sorted(missing)}. With transformers.Trainer set TrainingArguments(remove_unused_columns="
            "False): the base model's forward does not name the SHINE inputs, so the Trainer would drop them."
        )
