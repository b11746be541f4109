"""Example builders: stage 1 (RECON / COMP pretraining on a text, texts packed to a token budget) and stage 2
(multi-QA on one context, single-QA with the context among distractors).

An example is a dict of python int lists: `input_ids` (L,) and `labels` (L,) for the answering pass (a chat whose
assistant turns are the targets, see `encode_chat`) and `context_input_ids` (T,) for the evidence the hypernetwork
reads, plus a string `kind` for logging; with `teacher`, also `teacher_input_ids` / `teacher_labels` (L_t,).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

from ...tokenization import encode_plain, icl_prompt
from .chat import COMP_INSTRUCTION, QA, RECON_INSTRUCTION, encode_chat

PACK_SEPARATOR = "\n\n"
DISTRACTOR_SEPARATOR = "\n\n"


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


def word_prefix(text: str, fraction: float) -> str:
    """The text up to the end of its first round(fraction * words) whitespace-separated words (at least one),
    original spacing kept."""
    ends = [match.end() for match in re.finditer(r"\S+", text)]
    if not ends:
        raise ValueError("The text has no words.")
    count = min(len(ends), max(1, round(fraction * len(ends))))
    return text[: ends[count - 1]]


def check_fraction_range(fraction_range: tuple[float, float]) -> None:
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
    check_fraction_range(comp_fraction_range)
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
