"""Activation checkpointing under SHINE: a decoder layer's backward replay must run under the SHINE state (encode or
answer, and the generated factors) the layer first ran with, which changes between the encode and answer passes of
one training step."""

from __future__ import annotations

import functools
from collections.abc import Collection

from torch import nn

from .layer import ShineLinear, ShineRuntime, ShineState


def install_checkpoint_replay(layers: nn.ModuleList, runtime: ShineRuntime) -> None:
    """Make activation checkpointing of the decoder layers replay under the SHINE state each layer first ran with,
    the layer's generated factors passed to the checkpoint as inputs (`structure.with_state_replay`)."""
    for layer in layers:
        func = getattr(layer, "_gradient_checkpointing_func", None)
        if getattr(layer, "gradient_checkpointing", False) and not getattr(func, "shine_replays_state", False):
            keys = [module.key for module in layer.modules() if isinstance(module, ShineLinear)]
            layer._gradient_checkpointing_func = with_state_replay(func, runtime, keys)


def with_state_replay(checkpoint_func, runtime: ShineRuntime, keys: Collection[str] = ()):
    """Wrap a layer's activation-checkpoint function so that the backward replay runs under the SHINE state the layer
    first ran with (the state changes between the encode and answer passes of one training step).

    The generated factors of the layer's modules (`keys`) go to the checkpoint as inputs, not read from the state:
    reentrant checkpointing (`use_reentrant=True`) replays on detached inputs and hands their gradients back, so the
    gradient reaches the hypernetwork once, through the outer graph (read from the state, the replay would run its own
    backward through the hypernetwork and the encode pass, which the outer backward then meets freed)."""

    @functools.wraps(checkpoint_func)
    def checkpoint_with_state(function, *args, **kwargs):
        state = runtime.state
        used = [key for key in keys if key in state.factors]
        factors = [tensor for key in used for tensor in state.factors[key]]  # A, B of each key in turn
        num_args = len(args)

        def replay(*inner_args, **inner_kwargs):
            inner_factors = inner_args[num_args:]
            replayed = {key: (inner_factors[2 * i], inner_factors[2 * i + 1]) for i, key in enumerate(used)}
            with runtime.using(ShineState(state.mode, {**state.factors, **replayed})):
                return function(*inner_args[:num_args], **inner_kwargs)

        return checkpoint_func(replay, *args, *factors, **kwargs)

    checkpoint_with_state.shine_replays_state = True
    return checkpoint_with_state
