"""Torch datasets for `transformers.Trainer`: stage-1 pretraining texts (`PretrainDataset`) and stage-2 QA records
(`InstructDataset`, with distractors, the context-length curriculum and optional teacher fields). Item `i` is
deterministic given the seed and `i`."""

from __future__ import annotations

import random
from collections.abc import Sequence

from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from ...qa_records import validate_qa_record
from ...tokenization import as_text_list, encode_plain
from .curriculum import CurriculumProgress, check_curriculum_steps, curriculum_context
from .examples import (
    DISTRACTOR_SEPARATOR,
    build_multi_qa_example,
    build_pretrain_example,
    build_single_qa_example,
    check_fraction_range,
    pack_texts,
)
from .loading import group_by_context


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
        check_fraction_range(comp_fraction_range)
        self.texts = pack_texts(texts, tokenizer, pack_tokens) if pack_tokens else texts
        self.tokenizer = tokenizer
        self.seed = seed
        self.comp_fraction_range = comp_fraction_range
        self.recon_probability = recon_probability

    def __len__(self) -> int:
        return len(self.texts)

    def evidence_token_counts(self) -> list[int]:
        """The longest evidence of each item in plain-text tokens: its whole text (RECON reads all of it)."""
        return [len(ids) for ids in encode_plain(self.tokenizer, self.texts)]

    def __getitem__(self, index: int) -> dict[str, list[int] | str]:
        rng = _item_rng(self.seed, index)
        return build_pretrain_example(
            self.texts[index], self.tokenizer, rng, self.comp_fraction_range, self.recon_probability
        )


class InstructDataset(CurriculumProgress, Dataset):
    """Stage-2 examples from QA records. mode="multi": one item per context with all its questions (see
    `build_multi_qa_example`); mode="single": one item per record, its context hidden among `num_distractors` other
    contexts (so 1 + num_distractors contexts in all; see `build_single_qa_example`).

    With `curriculum_steps` set, the gold context follows `curriculum_context` at the current `progress`, which
    `set_progress` (or `peft_shine.training.ShineTrainingCallback`) updates; distractors stay whole. Without it
    the full context is always used. Item `i` is deterministic given `seed`, `i` and `progress`.

    With `teacher=True` every item also carries `teacher_input_ids` / `teacher_labels` for the distillation
    objective: the same chat with the very evidence the hypernetwork reads (curriculum and distractors included) in
    the first user turn (see `peft_shine.training.data.examples`)."""

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
        records = [validate_qa_record(record, f"record {i}") for i, record in enumerate(records)]
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
        check_curriculum_steps(curriculum_steps)
        if not records:
            raise ValueError("No QA records given.")
        distinct = len({record["context"] for record in records})
        if distinct <= num_distractors:
            raise ValueError(
                f"{num_distractors} distractors need at least {num_distractors + 1} distinct contexts; got {distinct}."
            )

    def __len__(self) -> int:
        return len(self.items)

    def evidence_token_counts(self) -> list[int]:
        """The longest evidence of each item in plain-text tokens: its whole context (where the curriculum ends), and
        in single mode with distractors the gold context joined with the `num_distractors` longest others."""
        counts = dict(zip(self.contexts, map(len, encode_plain(self.tokenizer, self.contexts)), strict=True))
        if not self.num_distractors:
            return [counts[item["context"]] for item in self.items]
        separator = len(encode_plain(self.tokenizer, [DISTRACTOR_SEPARATOR])[0])
        longest = sorted(counts.items(), key=lambda pair: pair[1], reverse=True)[: self.num_distractors + 1]

        def bound(gold: str) -> int:
            others = [count for context, count in longest if context != gold][: self.num_distractors]
            return counts[gold] + sum(others) + separator * self.num_distractors

        return [bound(item["context"]) for item in self.items]

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
