"""The context encode pass: the frozen base reads left-padded contexts followed by M memory tokens with the meta-LoRA
on, and forward hooks keep every decoder layer's hidden states at the memory positions; plus the batched, checked
generation of LoRA factors from many chunks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .checkpointing import install_checkpoint_replay
from .hypernetwork import LoraFactors, ShineHypernetwork
from .layer import ShineRuntime, ShineState


def encode_position_ids(attention_mask: torch.Tensor, rule: str) -> torch.Tensor:
    """Position ids (B, T) of left-padded sequences: "mask" = cumsum(mask) - 1 (pads at 0), "arange" = 0 .. T - 1."""
    if rule == "arange":
        return torch.arange(attention_mask.shape[1], device=attention_mask.device).expand_as(attention_mask)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def encode_memory_states(
    model: nn.Module,
    layers: nn.ModuleList,
    runtime: ShineRuntime,
    memory_embeddings: torch.Tensor,
    context_input_ids: torch.Tensor,
    context_attention_mask: torch.Tensor,
    position_ids: str = "mask",
) -> torch.Tensor:
    """Left-padded contexts (B, T) + M memory tokens (memory_embeddings (1, M, H)) -> memory states (B, L, M, H).

    One pass of `model.base_model` (the decoder stack of a transformers causal LM) under the "encode" state (the
    meta-LoRA on); forward hooks on the L `layers` take each layer's output at the M memory positions (before the
    final norm). `position_ids`: "mask" counts positions from the attention mask (cumsum - 1), "arange" numbers the
    padded sequence 0 .. T + M - 1 (the reference code's rule; see `ShineConfig.context_position_ids`)."""
    num_slots = memory_embeddings.shape[-2]
    batch = context_input_ids.shape[0]
    context_embeds = model.get_input_embeddings()(context_input_ids)
    memory = memory_embeddings.to(context_embeds.dtype).expand(batch, -1, -1)
    inputs_embeds = torch.cat([context_embeds, memory], dim=1)
    attention_mask = torch.cat([context_attention_mask, context_attention_mask.new_ones(batch, num_slots)], dim=1)
    positions = encode_position_ids(attention_mask, position_ids)

    memory_states: list[torch.Tensor] = []

    def collect(module, inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        memory_states.append(hidden[:, -num_slots:])

    install_checkpoint_replay(layers, runtime)
    hooks = [layer.register_forward_hook(collect) for layer in layers]
    try:
        with runtime.using(ShineState("encode")):
            model.base_model(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=positions, use_cache=False
            )
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(memory_states, dim=1)


def generate_in_batches(
    generate: Callable[[torch.Tensor, torch.Tensor], LoraFactors],
    hypernetwork: ShineHypernetwork,
    ids: torch.Tensor,
    mask: torch.Tensor,
    batch_size: int,
) -> LoraFactors:
    """`generate` over (N, T) chunks, `batch_size` at a time -> A (N, in, r), B (N, r, out). Raises FloatingPointError
    naming the module and the cause (`non_finite_cause`) when a generated factor is not finite."""
    batches = [generate(ids[i : i + batch_size], mask[i : i + batch_size]) for i in range(0, ids.shape[0], batch_size)]
    factors = {
        key: (torch.cat([f[key][0] for f in batches]), torch.cat([f[key][1] for f in batches])) for key in batches[0]
    }
    for key, (a, b) in factors.items():
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise FloatingPointError(
                f"The generated LoRA of module {key} (A {tuple(a.shape)}, B {tuple(b.shape)}) is not finite: "
                f"{non_finite_cause(hypernetwork)}. The current context is unchanged."
            )
    return factors


def non_finite_cause(hypernetwork: ShineHypernetwork) -> str:
    """Why generated factors are not finite: the hypernetwork tensors that are not, else an overflow in the base."""
    tensors = [*hypernetwork.named_parameters(), *hypernetwork.named_buffers()]
    broken = [name for name, tensor in tensors if tensor.is_floating_point() and not tensor.isfinite().all()]
    if broken:
        return (
            f"the hypernetwork tensors {broken} hold NaN/Inf (damaged adapter weights or a diverged training run); "
            "reload a good checkpoint"
        )
    return (
        "every hypernetwork tensor is finite, so the base model's hidden states overflowed; load the base in "
        "bfloat16 or float32 (float16 overflows easily)"
    )
