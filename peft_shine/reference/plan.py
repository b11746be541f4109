"""The `ShineConfig` a reference checkpoint implies on a base model, with every shape checked against the base's
skeleton (built on the meta device: no weights are read)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from ..building import record_or_check_base
from ..config import REFERENCE_TARGET_MODULES, ShineConfig, default_num_heads
from ..structure import DecoderStructure, resolve_targets
from .checkpoint import BLOCK_KEYS, LAYER_MODULES, REFERENCE_MODULES, ReferenceCheckpoint


def base_structure(
    base: str | PretrainedConfig, revision: str | None = None
) -> tuple[torch.nn.Module, DecoderStructure]:
    """The base's skeleton (on the meta device: no weights are loaded) and the modules the reference targets."""
    config = base if isinstance(base, PretrainedConfig) else AutoConfig.from_pretrained(base, revision=revision)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    try:
        structure = resolve_targets(model, list(REFERENCE_TARGET_MODULES))
    except ValueError as error:
        raise ValueError(f"The base does not hold the projections the reference adapts: {error}") from None
    if tuple(structure.module_shapes) != LAYER_MODULES:
        raise ValueError(
            f"The reference slices its LoRA for {list(LAYER_MODULES)} in that order; this base's decoder layers hold "
            f"{list(structure.module_shapes)}. Convert for the Qwen3 base the checkpoint was trained on."
        )
    return model, structure


def plan_conversion(
    checkpoint: ReferenceCheckpoint,
    base: str | PretrainedConfig,
    *,
    m2p_num_heads: int | None = None,
    lora_scale: float = 1e-3,
    revision: str | None = None,
) -> tuple[ShineConfig, DecoderStructure]:
    """The `ShineConfig` that reproduces `checkpoint` on `base` (a path, Hub id or config), and the base's structure.

    The files determine L, H, M, the M2P block count and FFN width, the meta-LoRA rank, and r = M*H/D (D: the sum of
    in + out over the seven projections of one base layer). The heads (default H/128) and the scale (default 1e-3)
    are not stored by the reference and are options. Raises ValueError naming every mismatch with the base and every
    reference variant peft-shine does not reproduce."""
    model, structure = base_structure(base, revision)
    text_config = model.config.get_text_config()
    problems = unsupported_variants(checkpoint)
    hidden, layers = text_config.hidden_size, len(structure.layers)
    if checkpoint.hidden_size != hidden:
        problems.append(f"mem_tokens.pt has width {checkpoint.hidden_size}, the base's hidden size is {hidden}")
    if checkpoint.num_layers != layers:
        problems.append(f"layer_pe has {checkpoint.num_layers} layers, the base has {layers} decoder layers")
    if len(checkpoint.metalora) != layers:
        problems.append(f"metalora.pth covers {len(checkpoint.metalora)} layers, the base has {layers}")
    per_layer = sum(i + o for i, o in structure.module_shapes.values())
    rank, remainder = divmod(checkpoint.num_slots * checkpoint.hidden_size, per_layer)
    if remainder or rank < 1:
        problems.append(
            f"{checkpoint.num_slots} memory slots x width {checkpoint.hidden_size} is not a multiple of D = "
            f"{per_layer} (in + out of the seven projections of one base layer), so no LoRA rank r gives M = r*D/H"
        )
    problems += meta_lora_mismatches(checkpoint, structure)
    if problems:
        raise ValueError(
            f"The reference checkpoint in {checkpoint.folder} does not fit this base "
            f"({getattr(text_config, 'name_or_path', '') or text_config.model_type}):\n- " + "\n- ".join(problems)
        )
    heads = m2p_num_heads or default_num_heads(hidden)
    config = ShineConfig.reference(
        lora_rank=rank,
        meta_lora_rank=checkpoint.meta_lora_rank,
        m2p_layers=checkpoint.num_blocks,
        lora_scale=lora_scale,
        m2p_num_heads=heads,
        m2p_intermediate_size=checkpoint.m2p_intermediate_size,
        base_model_name_or_path=base if isinstance(base, str) else getattr(base, "name_or_path", None) or None,
        inference_mode=True,
    )
    record_or_check_base(model, config, structure)
    config.resolve_sizes()
    if config.num_memory_tokens != checkpoint.num_slots:  # r*D/H is exact above, so this only guards the formula
        raise ValueError(f"M = {config.num_memory_tokens} from the config, {checkpoint.num_slots} in the files.")
    return config, structure


def unsupported_variants(checkpoint: ReferenceCheckpoint) -> list[str]:
    """Reference M2P variants peft-shine does not reproduce, found in the state dict."""
    problems = []
    extra = {key for key in checkpoint.metanetwork if key.startswith("couple_layers.")}
    if extra:
        problems.append(f"the M2P has couple_layers ({len(extra)} tensors): that variant is not supported")
    blocks = checkpoint.num_blocks
    if blocks == 0 or blocks % 2:
        problems.append(f"the M2P has {blocks} blocks; peft-shine's alternate the layer and memory axes in pairs")
    known = {"layer_pe", "token_pe"} | {f"transformer_layers.{i}.{k}" for i in range(blocks) for k in BLOCK_KEYS}
    unknown = sorted(set(checkpoint.metanetwork) - known - extra)
    if unknown:
        problems.append(f"metanetwork.pth holds tensors peft-shine does not know: {unknown[:6]}")
    token_pe = checkpoint.metanetwork.get("token_pe")
    if token_pe is not None and tuple(token_pe.shape) != tuple(checkpoint.mem_tokens.shape):
        problems.append(
            f"token_pe is {tuple(token_pe.shape)}, mem_tokens {tuple(checkpoint.mem_tokens.shape)} "
            "(a mean-pooled M2P, mean_pool_size > 1, is not supported)"
        )
    return problems


def meta_lora_mismatches(checkpoint: ReferenceCheckpoint, structure: DecoderStructure) -> list[str]:
    """Meta-LoRA factors whose shapes differ from the base's projections (or whose ranks differ)."""
    problems, rank = [], checkpoint.meta_lora_rank
    names = list(structure.module_shapes)
    for layer, groups in checkpoint.metalora.items():
        ours = iter(names)
        for group, modules in REFERENCE_MODULES.items():
            for name in modules:
                fan_in, fan_out = structure.module_shapes[next(ours)]
                a, b = groups[group][name]["A"], groups[group][name]["B"]
                if tuple(a.shape) != (1, fan_in, rank) or tuple(b.shape) != (1, rank, fan_out):
                    problems.append(
                        f"meta-LoRA layer {layer} {group}.{name}: A {tuple(a.shape)}, B {tuple(b.shape)}; the base "
                        f"needs A (1, {fan_in}, {rank}) and B (1, {rank}, {fan_out})"
                    )
    return problems[:8]
