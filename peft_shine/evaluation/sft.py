"""The per-context fine-tuning baseline (`sft`): a fresh rank-8 LoRA on a plain copy of the base, trained on each
context as language-model text, then asked the context's questions alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..generation import generate_answers
from .methods import EvalSettings, MethodRun
from .records import Record, chunks, group_by_context
from .timing import model_device, timed

SFT_LORA_RANK = 8
SFT_LORA_ALPHA = 16


def sft_target_modules(model: PeftModel) -> list[str]:
    """The module names SHINE adapts, as last path components ("self_attn.q_proj" -> "q_proj")."""
    targets = model.peft_config[model.active_adapter].target_modules
    return sorted({name.rsplit(".", 1)[-1] for name in targets})


def build_sft_model(base: PreTrainedModel, target_modules: list[str], device: torch.device, seed: int) -> PeftModel:
    """A plain base model on `device` wrapped with a fresh, seeded rank-8 LoRA (alpha 16) on `target_modules`."""
    if model_device(base) != device:
        base = base.to(device)
    torch.manual_seed(seed)
    config = LoraConfig(
        r=SFT_LORA_RANK,
        lora_alpha=SFT_LORA_ALPHA,
        lora_dropout=0.0,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config).eval()


def train_on_context(model: PeftModel, context_ids: torch.Tensor, epochs: int, lr: float) -> None:
    """Fit the model's trainable parameters to one context (1, T) with the causal LM loss: one AdamW step per epoch.
    A one-token context has no next token to predict and is not trained on."""
    if context_ids.shape[1] < 2:
        return
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    with torch.enable_grad():
        for _ in range(epochs):
            model(input_ids=context_ids, labels=context_ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable parameters, by name."""
    return {name: param.detach().clone() for name, param in model.named_parameters() if param.requires_grad}


def _restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `state` (see `_trainable_state`) back into the model's parameters."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in state:
                param.copy_(state[name])


def require_base_factory(settings: EvalSettings) -> None:
    """Raise ValueError when the settings have no loader of the plain base model."""
    if settings.base_factory is None:
        raise ValueError("The 'sft' method needs base_factory: a callable that returns a plain copy of the base model.")


def run_sft(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    settings: EvalSettings,
    progress: tqdm,
) -> MethodRun:
    """Per-context fine-tuning: for each distinct context, a fresh LoRA (the same seeded initialisation each time) on
    a plain base from `settings.base_factory` is trained on the context's tokens (as SHINE reads them) for
    `sft_epochs` AdamW steps, then answers the context's questions alone. The plain base is a second copy of the model
    in memory; it is loaded once per run."""
    require_base_factory(settings)
    device = model_device(model)
    sft_model = build_sft_model(settings.base_factory(), sft_target_modules(model), device, settings.seed)
    initial = _trainable_state(sft_model)
    groups = group_by_context(records)
    run = MethodRun(predictions=[""] * len(records), num_contexts=len(groups))
    for context, indices in groups.items():
        _restore(sft_model, initial)
        context_ids, _ = model.tokenize_contexts([context], tokenizer)
        _, seconds = timed(device, train_on_context, sft_model, context_ids, settings.sft_epochs, settings.sft_lr)
        run.adapt_seconds += seconds
        for batch in chunks(indices, settings.batch_size):
            questions = [records[index]["question"] for index in batch]
            answers, seconds = timed(device, generate_answers, sft_model, tokenizer, questions, settings.max_new_tokens)
            for index, answer in zip(batch, answers):
                run.predictions[index] = answer
            run.generate_seconds += seconds
            progress.update(len(batch))
    return run
