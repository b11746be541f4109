"""Where SHINE acts inside a transformers causal LM: the decoder layers, the linear projections of each layer that
receive a generated LoRA, and activation checkpointing that replays a layer under the SHINE state it first ran with."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import nn

from .layer import ShineRuntime


@dataclass(frozen=True)
class DecoderStructure:
    """Where a causal LM keeps its decoder layers and which linear modules of each layer SHINE targets."""

    layers_path: str  # e.g. "model.layers"
    layers: nn.ModuleList
    module_shapes: dict[str, list[int]]  # relative name -> [in, out], in module order

    def module_path(self, layer_index: int, relative_name: str) -> str:
        return f"{self.layers_path}.{layer_index}.{relative_name}"


def find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The `nn.ModuleList` holding the decoder layers (the one whose length is the config's layer count)."""
    num_layers = model.config.get_text_config().num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == num_layers and name:
            return name, module
    raise ValueError(
        f"Could not find the decoder layers of {type(model).__name__}: no nn.ModuleList of length "
        f"num_hidden_layers={num_layers}. SHINE needs a decoder-only transformers model."
    )


def discover_structure(model: nn.Module, target_modules: str | list[str] | None) -> DecoderStructure:
    """Find the decoder layers and the targeted linear projections (identical in every layer)."""
    layers_path, layers = find_decoder_layers(model)
    if target_modules in (None, "all-linear"):
        wanted = None
    else:
        wanted = [target_modules] if isinstance(target_modules, str) else list(target_modules)

    def selected(name: str) -> bool:
        return wanted is None or any(name == t or name.endswith("." + t) for t in wanted)

    per_layer = []
    for layer in layers:
        shapes = {}
        for name, module in layer.named_modules():
            if name and isinstance(module, nn.Linear) and selected(name):
                shapes[name] = [module.in_features, module.out_features]
        per_layer.append(shapes)
    if not per_layer[0]:
        raise ValueError(
            f"target_modules={target_modules!r} matches no linear module inside the decoder layers at {layers_path!r}."
        )
    if any(shapes != per_layer[0] for shapes in per_layer):
        raise ValueError("SHINE needs the same target modules with the same shapes in every decoder layer.")
    return DecoderStructure(layers_path, layers, per_layer[0])


def with_state_replay(checkpoint_func, runtime: ShineRuntime):
    """Wrap a layer's activation-checkpoint function so that the backward replay runs under the SHINE state the layer
    first ran with (the state changes between the encode and answer passes of one training step)."""

    @functools.wraps(checkpoint_func)
    def checkpoint_with_state(function, *args, **kwargs):
        state = runtime.state

        def replay(*inner_args, **inner_kwargs):
            with runtime.using(state):
                return function(*inner_args, **inner_kwargs)

        return checkpoint_func(replay, *args, **kwargs)

    checkpoint_with_state.shine_replays_state = True
    return checkpoint_with_state
