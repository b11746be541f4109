"""`ShineLinear`: a frozen linear layer with SHINE's two adapters.

- encode mode: y = W x + meta_B(meta_A(x)), the trainable meta-LoRA used only while a context is read;
- answer mode: y = W x + (x A_c) B_c with the generated LoRA of the context c that owns the row;
- base mode: y = W x.

The mode and the generated factors are not stored on the layer: all layers of a model read one shared
`ShineRuntime`, so switching context is one assignment, and activation checkpointing can replay a layer under the
state it first ran with (see `ShineModel`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .hypernetwork import LoraFactors


@dataclass(frozen=True)
class ShineState:
    """What every `ShineLinear` of a model does right now."""

    mode: Literal["base", "encode", "answer"] = "base"
    factors: LoraFactors = field(default_factory=dict)


class ShineRuntime:
    """The state shared by all `ShineLinear` layers of one model."""

    def __init__(self) -> None:
        self.state = ShineState()

    @contextmanager
    def using(self, state: ShineState) -> Iterator[None]:
        """Run a block under `state`, restoring the previous state afterwards (also on an exception)."""
        previous, self.state = self.state, state
        try:
            yield
        finally:
            self.state = previous


def rows_to_contexts(num_rows: int, num_contexts: int) -> torch.Tensor | None:
    """Context index of each batch row, context-major (rows [c0, c0, c1, c1] for 2 rows per context).

    Returns None when rows and contexts correspond one to one. Several rows per context come from several questions
    per context, `num_return_sequences` or beams, which all expand a batch context-major.
    """
    if num_rows == num_contexts:
        return None
    if num_rows % num_contexts:
        raise ValueError(
            f"A batch of {num_rows} rows cannot be matched to {num_contexts} absorbed contexts: rows are assigned "
            f"context-major, so the row count must be a multiple of the context count. Absorb one context per "
            f"group of rows, or call forget() first."
        )
    return torch.arange(num_contexts).repeat_interleave(num_rows // num_contexts)


class ShineLinear(nn.Module, BaseTunerLayer):
    """Wraps an `nn.Linear` of a decoder layer; see the module docstring for the three modes."""

    adapter_layer_names = ("shine_meta_A", "shine_meta_B")
    other_param_names = ()

    def __init__(
        self,
        base_layer: nn.Linear,
        adapter_name: str,
        meta_lora_rank: int,
        runtime: ShineRuntime,
        key: str,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.shine_meta_A = nn.ModuleDict()
        self.shine_meta_B = nn.ModuleDict()
        self.runtime = runtime
        self.key = key
        self._disable_adapters = False
        self.merged_adapters = []
        self.update_layer(adapter_name, meta_lora_rank, init_weights)
        self._active_adapter = adapter_name

    def update_layer(self, adapter_name: str, meta_lora_rank: int, init_weights: bool = True) -> None:
        """Create the meta-LoRA of `adapter_name` on the base device: A random (as LoRA's kaiming init), B zero (random
        with `init_weights=False`, as LoRA's `init_lora_weights=False`)."""
        weight = self.base_layer.weight
        meta_a = nn.Linear(self.in_features, meta_lora_rank, bias=False, device=weight.device)
        meta_b = nn.Linear(meta_lora_rank, self.out_features, bias=False, device=weight.device)
        nn.init.kaiming_uniform_(meta_a.weight, a=math.sqrt(5))
        if init_weights:
            nn.init.zeros_(meta_b.weight)
        self.shine_meta_A[adapter_name] = meta_a
        self.shine_meta_B[adapter_name] = meta_b

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        state = self.runtime.state
        if state.mode == "base" or (self.disable_adapters and state.mode == "answer"):
            return result
        if state.mode == "encode":
            if not self.active_adapters:
                raise ValueError("This SHINE layer has no active adapter (it was deleted).")
            adapter = self.active_adapters[0]
            meta_a, meta_b = self.shine_meta_A[adapter], self.shine_meta_B[adapter]
            return result + meta_b(meta_a(x.to(meta_a.weight.dtype))).to(result.dtype)
        a, b = state.factors[self.key]
        return result + self.generated_delta(x, a, b).to(result.dtype)

    @staticmethod
    def generated_delta(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(x A_c) B_c for rows x (N, ..., in) and per-context factors A (C, in, r), B (C, r, out) -> (N, ..., out)."""
        a, b = a.to(x.dtype), b.to(x.dtype)
        if a.shape[0] == 1:
            return (x @ a[0]) @ b[0]
        index = rows_to_contexts(x.shape[0], a.shape[0])
        if index is not None:
            a, b = a[index.to(a.device)], b[index.to(b.device)]
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (N, T, in)
        return torch.bmm(torch.bmm(flat, a), b).reshape(*x.shape[:-1], b.shape[-1])

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise NotImplementedError(
            "A SHINE adapter is a hypernetwork, not fixed weights, so it cannot be merged. Absorb a context and merge "
            "its exported LoRA instead: `ctx = model.absorb_context(text); ctx.save_pretrained(dir)`, then "
            "`PeftModel.from_pretrained(base, dir).merge_and_unload()`."
        )

    def unmerge(self) -> None:
        """Nothing is ever merged into a ShineLinear."""

    def __repr__(self) -> str:
        return f"shine.{super().__repr__()}"
