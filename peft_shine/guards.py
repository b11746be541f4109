"""What a SHINE forward refuses before any work: loss inputs passed as model inputs, and a training loss that would
reach no trainable SHINE parameter (no contexts). Used by `ShineModel.forward` and by the Trainer-side `ShineLoss`."""

from __future__ import annotations

from typing import Any

import torch


def missing_contexts_error(what: str) -> ValueError:
    """The error for a training loss computed without contexts: `what` says what the forward got."""
    return ValueError(
        f"A SHINE model trains through the contexts it reads, but {what} and no context_input_ids: the loss would "
        "reach no trainable SHINE parameter (grad_norm 0, nothing learns). Give every training batch "
        "context_input_ids (B_ctx, T) and context_attention_mask: build the examples with "
        "peft_shine.data.InstructDataset or PretrainDataset and batch them with peft_shine.data.ShineDataCollator "
        "(Trainer(..., remove_unused_columns=False)), or train with TRL through peft_shine.sft.ShineSFTTrainer and a "
        "'context' column (docs/training.md). For the base model's loss without contexts, call the model under "
        "model.eval() or torch.no_grad()."
    )


def learns_from_contexts(model: torch.nn.Module) -> bool:
    """Whether a forward of `model` now would train SHINE: training mode, gradients on, and a trainable SHINE
    parameter (hypernetwork or meta-LoRA, named with the `shine_` prefix)."""
    if not (model.training and torch.is_grad_enabled()):
        return False
    return any(param.requires_grad for name, param in model.named_parameters() if "shine_" in name)


def reject_loss_inputs(model_kwargs: dict[str, Any]) -> None:
    """Raise ValueError when the keyword arguments of a model forward hold loss inputs (teacher fields)."""
    found = sorted(key for key in model_kwargs if key.startswith("teacher_") or key == "distill_weight")
    if found:
        raise ValueError(
            f"{found} are loss inputs, not model inputs: train with "
            "Trainer(compute_loss_func=peft_shine.ShineLoss(model, distill_weight)), which takes them out of the "
            "batch (or drop them)."
        )
