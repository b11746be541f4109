"""The collator: a list of examples (see `examples.py`) as one batch, answering passes right-padded and contexts
left-padded, with the feature check that catches a Trainer that dropped the SHINE columns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from ...config import check_choice
from ...padding import IGNORE_INDEX, left_pad, pad_id_of, right_pad
from ...tokenization import fit_context_lengths


@dataclass
class ShineDataCollator:
    """Batches examples: `input_ids` (B, L) right-padded with the tokenizer's pad id, `attention_mask` (B, L),
    `labels` (B, L) padded with -100, and `context_input_ids` / `context_attention_mask` (B, T) left-padded after the
    `context_overflow` policy (see `fit_context_lengths`: "truncate" cuts with a warning; "error" and "chunk" raise,
    since a training context is encoded in one pass) is applied with `max_context_tokens`.
    Examples with `teacher_input_ids` / `teacher_labels` (see `InstructDataset(teacher=True)`) also give
    `teacher_input_ids`, `teacher_attention_mask`, `teacher_labels` (B, L_t), right-padded like the answering pass:
    loss inputs that `objective.ShineLoss` (which holds the distillation weight) takes out of the model inputs.
    Other keys (e.g. `kind`) are dropped. One answering row per context."""

    tokenizer: PreTrainedTokenizerBase
    max_context_tokens: int = 2048
    context_overflow: str = "error"

    def __post_init__(self) -> None:
        check_choice("context_overflow", self.context_overflow)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
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
