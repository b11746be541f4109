"""The stage-1/2 training loss on the Trainer side: `Trainer(compute_loss_func=ShineLoss(model, distill_weight))`.

`ShineModel.forward` is a model forward (contexts in, logits out). What a training step does with the logits lives
here: the causal-LM cross-entropy on the labelled tokens (transformers' own `ForCausalLMLoss`, so the numbers equal the
base model's loss), the optional distillation term (`peft_shine.distillation`) against the plain base reading the
context in its prompt, and the policy for batches that cannot train (no answer tokens, a non-finite loss): a zero
loss that still reaches every trainable tensor, so data-parallel ranks stay in step, counted in `skipped`.

The teacher fields of a batch (`teacher_input_ids`, `teacher_attention_mask`, `teacher_labels`, see
`InstructDataset(..., teacher=True)`) are loss inputs, not model inputs: a forward pre-hook on the model takes them
out of the keyword arguments before the model runs, and the loss uses them. The Trainer stays stock.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from transformers.loss.loss_utils import ForCausalLMLoss

from .distillation import answer_token_kl
from .guards import learns_from_contexts, missing_contexts_error
from .padding import IGNORE_INDEX

TEACHER_KEYS = ("teacher_input_ids", "teacher_attention_mask", "teacher_labels")
SKIP_REASONS = ("no_answer_tokens", "non_finite_loss")
_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> the pre-hook of its newest ShineLoss


class ShineLoss:
    """`compute_loss_func` for a stock `transformers.Trainer` training a SHINE `PeftModel`.

    loss = distill_weight * answer_token_kl(student, teacher) + (1 - distill_weight) * cross-entropy, on logits
    (B, L, V) and labels (B, L) (-100 outside the answers); with distill_weight 0 (default) the cross-entropy alone,
    and no teacher fields are needed. Both terms are divided by `num_items_in_batch` when the Trainer gives it (the
    labelled tokens of the whole accumulated batch), else by this batch's labelled tokens.

    Args:
        model: the SHINE `PeftModel` the Trainer trains (the hook that takes the teacher fields is installed on it).
        distill_weight: weight of the KL term, in [0, 1].
    """

    def __init__(self, model: torch.nn.Module, distill_weight: float = 0.0) -> None:
        if not 0.0 <= distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in [0, 1], got {distill_weight}.")
        self.model = model
        self.distill_weight = distill_weight
        self.skipped = dict.fromkeys(SKIP_REASONS, 0)
        self._teacher: dict[str, torch.Tensor] = {}
        self._had_contexts = True
        previous = _HOOKS.pop(model, None)  # the hook of an earlier ShineLoss would take the teacher fields first
        if previous is not None:
            previous.remove()
        _HOOKS[model] = model.register_forward_pre_hook(self._take_teacher_fields, with_kwargs=True)

    def _take_teacher_fields(self, module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """Forward pre-hook: move the teacher fields of the batch out of the model's keyword arguments, and note
        whether the batch had contexts."""
        self._teacher = {key: kwargs.pop(key) for key in TEACHER_KEYS if key in kwargs}
        self._had_contexts = kwargs.get("context_input_ids") is not None
        return args, kwargs

    def __call__(self, outputs: Any, labels: torch.Tensor | None, num_items_in_batch: Any = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("ShineLoss needs `labels` in every batch (ShineDataCollator writes them).")
        teacher, self._teacher = self._teacher, {}
        if not self._had_contexts and learns_from_contexts(self.model):
            raise missing_contexts_error("the Trainer's batch had labels")
        if not (labels[..., 1:] != IGNORE_INDEX).any():
            return self._skip("no_answer_tokens")
        logits = outputs.logits
        loss = ForCausalLMLoss(logits, labels, logits.shape[-1], num_items_in_batch=num_items_in_batch)
        if self.distill_weight > 0:
            kl = answer_token_kl(
                logits, labels, self._teacher_logits(teacher), teacher["teacher_labels"], num_items_in_batch
            )
            loss = self.distill_weight * kl + (1.0 - self.distill_weight) * loss
        if not torch.isfinite(loss):
            return self._skip("non_finite_loss")
        return loss

    @torch.no_grad()
    def _teacher_logits(self, teacher: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, L_t, V) logits of the plain base model (no generated LoRA, no meta-LoRA) on the teacher chat (B, L_t)."""
        if "teacher_input_ids" not in teacher or "teacher_labels" not in teacher:
            raise ValueError(
                "Distillation (distill_weight > 0) needs teacher_input_ids and teacher_labels in every batch: build "
                "the dataset with InstructDataset(..., teacher=True)."
            )
        with self.model.base_model.without_context():
            return self.model(
                input_ids=teacher["teacher_input_ids"],
                attention_mask=teacher.get("teacher_attention_mask"),
                use_cache=False,
            ).logits

    def _skip(self, reason: str) -> torch.Tensor:
        """A zero loss that still reaches every trainable tensor (zero gradients); counted in `skipped`."""
        self.skipped[reason] += 1
        trainable = [param for param in self.model.parameters() if param.requires_grad]
        return sum(param.sum() for param in trainable) * 0.0
