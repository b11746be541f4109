"""Building a SHINE adapter for a base model: recording the base's structure in a new config (or checking a loaded
config against the base it is put on) and constructing the hypernetwork from the config."""

from __future__ import annotations

from torch import nn

from .config import ShineConfig
from .hypernetwork import ShineHypernetwork, SlicingPlan
from .structure import DecoderStructure


def record_or_check_base(model: nn.Module, config: ShineConfig, structure: DecoderStructure) -> None:
    """Write the base's model type, hidden size, layer count and target module shapes into a new `config` (all None),
    or raise ValueError when a loaded config records another base than `model`."""
    text_config = model.config.get_text_config()
    found = {
        "base_model_type": text_config.model_type,
        "base_hidden_size": text_config.hidden_size,
        "base_num_layers": len(structure.layers),
        "target_module_shapes": [[name, i, o] for name, (i, o) in structure.module_shapes.items()],
        "layers_to_transform": list(structure.layer_indices) if structure.restricts_layers else None,
    }
    recorded = {name: getattr(config, name) for name in found}
    if isinstance(recorded["layers_to_transform"], int):
        recorded["layers_to_transform"] = [recorded["layers_to_transform"]]
    if all(recorded[name] is None for name in found if name != "layers_to_transform"):
        for name, value in found.items():
            setattr(config, name, value)
        config.target_modules = list(structure.module_shapes)
        return
    if recorded != found:
        described = {k: v for k, v in recorded.items() if k != "target_module_shapes"}
        actual = {k: v for k, v in found.items() if k != "target_module_shapes"}
        raise ValueError(
            f"This SHINE adapter was built for a base with {described} and target modules "
            f"{recorded['target_module_shapes']}, but the model it is loaded onto "
            f"({getattr(model, 'name_or_path', '') or type(model).__name__}) has {actual} and target modules "
            f"{found['target_module_shapes']}. Load it onto the base it was trained for "
            f"({config.base_model_name_or_path or 'see adapter_config.json'})."
        )


def build_hypernetwork(model: nn.Module, config: ShineConfig) -> ShineHypernetwork:
    """The hypernetwork a resolved config describes, on the device of the base's input embeddings (whose standard
    deviation sets the scale of the memory embeddings).

    Under PEFT's `low_cpu_mem_usage=True` its parameters are created on the meta device and stay there until PEFT
    assigns the loaded weights; only the tensors that hold data are moved."""
    embeddings = model.get_input_embeddings().weight
    plan = SlicingPlan(
        module_shapes=tuple((name, i, o) for name, i, o in config.target_module_shapes),
        rank=config.lora_rank,
        num_layers=len(layers) if (layers := config.layers_to_transform) is not None else config.base_num_layers,
        layer_indices=tuple(layers) if layers is not None else None,
    )
    hypernetwork = ShineHypernetwork(
        plan,
        hidden_size=config.base_hidden_size,
        num_slots=config.num_memory_tokens,
        width=config.m2p_hidden_size,
        num_heads=config.m2p_num_heads,
        intermediate_size=config.m2p_intermediate_size,
        num_blocks=config.m2p_layers,
        lora_scale=config.lora_scale,
        stats_momentum=config.memory_stats_momentum,
        embedding_std=embeddings.detach().float().std().item(),
        standardize=config.standardize_memory_states,
    )
    return hypernetwork._apply(lambda t: t if t.is_meta else t.to(embeddings.device))
