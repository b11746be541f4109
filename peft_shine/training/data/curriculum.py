"""The context-length curriculum: the answer-bearing part of a context (`short_context`: bAbI supporting facts, or the
sentences holding the answer) early in training, the full context later (`curriculum_context`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ...tokenization import sentence_spans
from .chat import QA


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


def check_curriculum_steps(steps: int | None) -> None:
    """Raise ValueError unless `steps` (the curriculum length in training steps) is positive or None (none)."""
    if steps is not None and steps <= 0:
        raise ValueError(f"curriculum_steps must be a positive number of steps or None, got {steps}.")


class CurriculumProgress:
    """The training progress in [0, 1] a curriculum reads (`curriculum_context`), set by
    `peft_shine.training.ShineTrainingCallback` through `set_progress`."""

    progress: float = 0.0

    def set_progress(self, progress: float) -> None:
        """Set the training progress in [0, 1] that the curriculum reads."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}.")
        self.progress = progress
