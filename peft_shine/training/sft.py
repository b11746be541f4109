"""Training SHINE with TRL: `ShineSFTTrainer`, an `SFTTrainer` whose dataset carries a context column.

TRL prepares the answering pass as usual (a "messages" conversation, or "prompt"/"completion", tokenized with the chat
template, labels from TRL's `assistant_only_loss` / `completion_only_loss`); the context column (plain text) goes to
the hypernetwork: `ShineSFTCollator` tokenizes it as plain text (the context-length curriculum applied) and batches it
with `peft_shine.training.data.ShineDataCollator`, and the loss is `peft_shine.ShineLoss` in an overridden
`compute_loss` (what
TRL 1.x recommends instead of the deprecated `compute_loss_func`).

    from datasets import Dataset
    from trl import SFTConfig
    from peft_shine.training.sft import ShineSFTTrainer

    dataset = Dataset.from_list([{"context": "The report was signed by Ingrid Solberg.",
                                  "prompt": [{"role": "user", "content": "Who signed the report?"}],
                                  "completion": [{"role": "assistant", "content": "Ingrid Solberg"}]}])
    trainer = ShineSFTTrainer(base, args=SFTConfig("runs/sft"), train_dataset=dataset,
                              processing_class=tokenizer, peft_config=ShineConfig(...), curriculum_steps=300)
    trainer.train()

Needs the optional extra `peft-shine[trl]`. A plain `SFTTrainer` never gives the model contexts; a SHINE model raises
a ValueError at its first training step that points here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from ..config import check_choice
from ..model import ShineModel
from ..padding import IGNORE_INDEX
from ..tokenization import encode_plain
from .data.collator import ShineDataCollator
from .data.curriculum import CurriculumProgress, check_curriculum_steps, curriculum_context
from .objective import ShineLoss
from .trainer import ShineTrainingCallback, check_context_lengths, pin_memory_for_device

CURRICULUM_COLUMNS = ("messages", "prompt", "completion", "supporting_facts")
"""Columns the curriculum reads besides the context: the answers (assistant turns or completion) and bAbI facts."""


def _content(message: Any) -> str:
    """The text of a message: a str as it is, a chat message dict's "content"."""
    return message["content"] if isinstance(message, dict) else str(message)


def _turn_answers(feature: dict, eos_token: str | None) -> list[str]:
    """The answer texts of a TRL row: the assistant turns of "messages", else the completion (TRL appends the EOS
    token to a plain-text completion; it is removed here)."""
    if "messages" in feature:
        return [_content(m) for m in feature["messages"] if isinstance(m, dict) and m.get("role") == "assistant"]
    completion = feature.get("completion")
    if completion is None:
        return []
    messages = completion if isinstance(completion, list) else [completion]
    answers = [_content(m) for m in messages]
    return [a.removesuffix(eos_token) if eos_token else a for a in answers]


def _curriculum_record(feature: dict, context: str, eos_token: str | None) -> dict:
    """A QA group for `short_context`: the context, its answers as (question, [answer]) turns, and the row's bAbI
    supporting facts (a list of line indexes, or one such list per answer) when it has them."""
    record = {"context": context, "qas": [("", [answer]) for answer in _turn_answers(feature, eos_token)]}
    facts = feature.get("supporting_facts")
    if facts is not None:
        record["supporting_facts"] = [facts] if facts and isinstance(facts[0], int) else list(facts)
    return record


@dataclass
class ShineSFTCollator(CurriculumProgress):
    """Batches rows that TRL prepared (`input_ids`, `labels`) with their plain-text context column: the context is
    tokenized as plain text (`encode_plain`, as `absorb_context` reads it) and everything is padded by
    `ShineDataCollator` (`max_context_tokens`, `context_overflow`: "truncate" or "error" for a context encoded in one
    pass).

    With `curriculum_steps`, the context follows the context-length curriculum (`curriculum_context`): at training
    progress p (set by `ShineTrainingCallback` through `set_progress`) a row reads, with probability 1 - p, only the
    sentence(s) holding its answers (the assistant turns or the completion; bAbI rows: their `supporting_facts`).
    The draw is deterministic given `seed`, the progress and the context."""

    tokenizer: PreTrainedTokenizerBase
    max_context_tokens: int = 2048
    context_overflow: str = "error"
    context_column: str = "context"
    curriculum_steps: int | None = None
    seed: int = 0
    progress: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        check_choice("context_overflow", self.context_overflow)
        check_curriculum_steps(self.curriculum_steps)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        contexts = [self._evidence(feature, i) for i, feature in enumerate(features)]
        context_ids = encode_plain(self.tokenizer, contexts)
        rows = [
            {"input_ids": f["input_ids"], "labels": f.get("labels", f["input_ids"]), "context_input_ids": ids}
            for f, ids in zip(features, context_ids, strict=True)
        ]
        collate = ShineDataCollator(self.tokenizer, self.max_context_tokens, self.context_overflow)
        return collate(rows)

    def _evidence(self, feature: dict, index: int) -> str:
        """The text the hypernetwork reads for one row: its context, shortened by the curriculum."""
        context = feature.get(self.context_column)
        if not isinstance(context, str) or not context.strip():
            found = sorted(feature)
            raise ValueError(
                f"Row {index} of the batch has no text in the context column {self.context_column!r} (columns: "
                f"{found}). Give every row a non-empty context, or name the column with context_column=."
            )
        if self.curriculum_steps is None:
            return context
        rng = random.Random(f"{self.seed}:{self.progress}:{context}")
        return curriculum_context(_curriculum_record(feature, context, self.tokenizer.eos_token), self.progress, rng)


class ShineSFTTrainer(SFTTrainer):
    """TRL's `SFTTrainer` for a SHINE model: every row of the dataset has a context (column `context_column`) that
    the hypernetwork reads, next to TRL's usual "messages" or "prompt"/"completion" columns for the answering pass.

    The model is a SHINE `PeftModel`, or a base model with `peft_config=ShineConfig(...)`. TRL prepares and labels
    the answering pass as for any model; `ShineSFTCollator` adds the contexts (with the curriculum when
    `curriculum_steps` is set), the loss is `ShineLoss` (skipped batches counted and logged by
    `ShineTrainingCallback`, which also runs `freeze_encoder_steps` and `max_train_minutes`), and the logs keep
    TRL's `entropy`, `mean_token_accuracy` and `num_tokens`. Packing and padding-free batches are refused: each row
    must stay paired with its own context.
    """

    loss_is_scaled_for_ga = True  # ShineLoss divides by num_items_in_batch, the tokens of the accumulated batch

    def __init__(
        self,
        model,
        args: SFTConfig | None = None,
        *,
        context_column: str = "context",
        curriculum_steps: int | None = None,
        freeze_encoder_steps: int = 0,
        max_train_minutes: float | None = None,
        **kwargs: Any,
    ) -> None:
        _check_sft_options(args, kwargs)
        if args is not None:
            pin_memory_for_device(args)
        for name, dataset in _datasets(kwargs).items():
            _check_context_column(dataset, context_column, name)
        self.context_column = context_column
        self.curriculum_steps = curriculum_steps
        super().__init__(model, args, **kwargs)
        tuner = getattr(self.model, "base_model", None)
        if not isinstance(tuner, ShineModel):
            raise TypeError(
                f"ShineSFTTrainer trains a SHINE model; got {type(self.model).__name__}. Pass a SHINE PeftModel, or "
                "the base model with peft_config=ShineConfig(...)."
            )
        tuner.resolve_tokenizer(self._tokenizer)  # saved with the adapter, used by absorb_context and ask
        self.shine_loss = ShineLoss(self.model)
        if kwargs.get("data_collator") is None:
            config = tuner.shine_config
            self.data_collator = ShineSFTCollator(
                self._tokenizer,
                config.max_context_tokens,
                config.context_overflow,
                context_column,
                curriculum_steps,
                self.args.seed,
            )
        self._check_context_lengths(tuner.shine_config)
        curriculum = self.data_collator if curriculum_steps else None
        self.add_callback(ShineTrainingCallback(curriculum, freeze_encoder_steps, max_train_minutes, self.shine_loss))

    def _check_context_lengths(self, config) -> None:
        """Contexts longer than `max_context_tokens` fail (or warn, under "truncate") now, not at their batch."""
        evaluated = self.eval_dataset if isinstance(self.eval_dataset, dict) else {"evaluation": self.eval_dataset}
        for what, dataset in {"training": self.train_dataset, **evaluated}.items():
            if dataset is not None and hasattr(dataset, "__len__") and self.context_column in dataset.column_names:
                contexts = [text if isinstance(text, str) else "" for text in dataset[self.context_column]]
                counts = [len(ids) for ids in encode_plain(self._tokenizer, contexts)]
                check_context_lengths(counts, config, what)

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the context column (and what the curriculum reads) when `remove_unused_columns=True`."""
        super()._set_signature_columns_if_needed()
        extra = [self.context_column, *(CURRICULUM_COLUMNS if self.curriculum_steps else ())]
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *extra]))

    def get_eval_dataloader(self, eval_dataset=None):
        """Evaluation reads whole contexts: the collator without the curriculum."""
        return self._without_curriculum(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._without_curriculum(super().get_test_dataloader, test_dataset)

    def _without_curriculum(self, make_dataloader, dataset):
        collator = self.data_collator
        if isinstance(collator, ShineSFTCollator) and collator.curriculum_steps:
            self.data_collator = replace(collator, curriculum_steps=None)
        try:
            return make_dataloader(dataset)
        finally:
            self.data_collator = collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """`ShineLoss` on the model's logits (the contexts encoded in the same forward), plus TRL's token metrics."""
        labels = inputs.get("labels")
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"}, use_cache=False)
        loss = self.shine_loss(outputs, labels, num_items_in_batch)
        if model.training and num_items_in_batch is None:
            loss = loss / self.current_gradient_accumulation_steps  # a per-batch mean: scale for accumulation here
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; num_items counts every rank
        self._record_token_metrics(outputs.logits.detach(), labels, inputs.get("attention_mask"))
        return (loss, outputs) if return_outputs else loss

    def _record_token_metrics(
        self, logits: torch.Tensor, labels: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> None:
        """TRL's `entropy`, `mean_token_accuracy` (over the labelled next tokens) and `num_tokens` logs, from logits
        (B, L, V) and labels (B, L)."""
        mode = "train" if self.model.training else "eval"
        if labels is not None:
            logits, targets = logits[:, :-1], labels[:, 1:]
            mask = targets != IGNORE_INDEX
            log_probs = logits.float().log_softmax(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            gather = self.accelerator.gather_for_metrics
            count = gather(mask.sum()).sum()
            correct = gather(((logits.argmax(-1) == targets) & mask).sum()).sum()
            entropy_sum = gather((entropy * mask).sum()).sum()
            self._metrics[mode]["entropy"].append((entropy_sum / count).item() if count > 0 else 0.0)
            self._metrics[mode]["mean_token_accuracy"].append((correct / count).item() if count > 0 else 0.0)
        if mode == "train" and attention_mask is not None:
            self._total_train_tokens += self.accelerator.gather_for_metrics(attention_mask.sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]


def _check_sft_options(args: SFTConfig | None, kwargs: dict) -> None:
    """Raise ValueError for SFTTrainer options that would separate rows from their contexts."""
    if args is not None and (getattr(args, "packing", False) or getattr(args, "padding_free", False)):
        raise ValueError(
            "ShineSFTTrainer pairs every row with its own context, so packing and padding_free (which join rows) are "
            "not supported: set SFTConfig(packing=False, padding_free=False)."
        )
    if kwargs.get("compute_loss_func") is not None:
        raise ValueError("ShineSFTTrainer computes the loss with peft_shine.ShineLoss; do not pass compute_loss_func.")


def _datasets(kwargs: dict) -> dict[str, Any]:
    """The train and eval datasets given to the trainer, by name."""
    found = {"train": kwargs.get("train_dataset")}
    eval_dataset = kwargs.get("eval_dataset")
    if isinstance(eval_dataset, dict):
        found.update({f"eval '{key}'": value for key, value in eval_dataset.items()})
    else:
        found["eval"] = eval_dataset
    return {name: dataset for name, dataset in found.items() if dataset is not None}


def _check_context_column(dataset: Any, column: str, name: str) -> None:
    """Raise ValueError naming the columns when a datasets.Dataset lacks the context column."""
    columns: Sequence[str] | None = getattr(dataset, "column_names", None)
    if columns is not None and column not in columns:
        raise ValueError(
            f"The {name} dataset has no context column {column!r} (columns: {list(columns)}). Each row needs the text "
            "the hypernetwork reads: add that column, or name yours with ShineSFTTrainer(..., context_column=...)."
        )
