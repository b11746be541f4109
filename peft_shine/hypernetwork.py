"""The SHINE hypernetwork in plain torch: memory embeddings, memory-state standardisation, the M2P transformer and
the fixed slicing of its output into per-module LoRA factors.

Shapes: B contexts, L decoder layers, M memory slots, H base hidden size, W M2P width, r generated rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LoraFactors = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Module key "<layer>.<relative name>" -> (A of shape (B, in, r), B of shape (B, r, out))."""


def module_key(layer_index: int, relative_name: str) -> str:
    """Key of one target module in `LoraFactors`, e.g. `module_key(3, "self_attn.q_proj") == "3.self_attn.q_proj"`."""
    return f"{layer_index}.{relative_name}"


@dataclass(frozen=True)
class SlicingPlan:
    """How one decoder layer's M2P output (M * H numbers, row-major) is cut into LoRA factors.

    Modules are read in `module_shapes` order; inside a module A (in x r) comes first, then B (r x out). Numbers past
    r * D (from the ceiling in M) are ignored.
    """

    module_shapes: tuple[tuple[str, int, int], ...]  # (relative name, in_features, out_features)
    rank: int
    num_layers: int
    layer_indices: tuple[int, ...] | None = None  # decoder layer of each M2P layer row; None = 0 .. num_layers - 1

    @property
    def numbers_per_layer(self) -> int:
        """r * D."""
        return self.rank * sum(i + o for _, i, o in self.module_shapes)

    def slice(self, flat: torch.Tensor, scale: float) -> LoraFactors:
        """Cut (B, L, N >= r*D) into factors scaled by sqrt(scale): A (B, in, r), B (B, r, out) per module key."""
        if flat.shape[-1] < self.numbers_per_layer:
            raise ValueError(f"Need {self.numbers_per_layer} numbers per layer, got {flat.shape[-1]}.")
        root = math.sqrt(scale)
        factors: LoraFactors = {}
        batch, r = flat.shape[0], self.rank
        for layer in range(self.num_layers):
            offset = 0
            for name, fan_in, fan_out in self.module_shapes:
                a = flat[:, layer, offset : offset + fan_in * r].reshape(batch, fan_in, r)
                offset += fan_in * r
                b = flat[:, layer, offset : offset + r * fan_out].reshape(batch, r, fan_out)
                offset += r * fan_out
                index = layer if self.layer_indices is None else self.layer_indices[layer]
                factors[module_key(index, name)] = (a * root, b * root)
        return factors


class MemoryStandardizer(nn.Module):
    """Standardises memory states per (layer, slot, dim) with running statistics kept as (saved) buffers.

    Massive activations (single residual dimensions in the tens of thousands) make a LayerNorm of the raw states
    dominated by context-independent values; subtracting each coordinate's mean across contexts and dividing by its
    standard deviation across contexts keeps the context-dependent part. Statistics are pooled exactly over all
    contexts seen until `1 / count` falls below `momentum`, then tracked with that momentum.
    """

    def __init__(self, num_layers: int, num_slots: int, hidden_size: int, momentum: float, eps: float = 1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(num_layers, num_slots, hidden_size))
        self.register_buffer("running_var", torch.ones(num_layers, num_slots, hidden_size))
        self.register_buffer("num_contexts_tracked", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, states: torch.Tensor) -> None:
        """Fold a batch of memory states (B, L, M, H) into the running statistics."""
        states = states.detach().float()
        count = states.shape[0]
        seen = int(self.num_contexts_tracked)
        weight = max(count / (seen + count), self.momentum)
        batch_mean = states.mean(0)
        batch_var = states.var(0, unbiased=False)
        new_mean = torch.lerp(self.running_mean, batch_mean, weight)
        new_var = (1 - weight) * (self.running_var + (self.running_mean - new_mean) ** 2) + weight * (
            batch_var + (batch_mean - new_mean) ** 2
        )
        if seen == 0:
            new_mean, new_var = batch_mean, batch_var
        self.running_mean.copy_(new_mean)
        self.running_var.copy_(new_var)
        self.num_contexts_tracked += count

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(B, L, M, H) -> standardised (B, L, M, H) in float32."""
        return (states.float() - self.running_mean) * torch.rsqrt(self.running_var + self.eps)


class AxisSelfAttention(nn.Module):
    """Bidirectional multi-head self-attention over the second-to-last axis of (..., T, W)."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, length, width = x.shape
        q, k, v = self.qkv(x).reshape(-1, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, head_dim)
        return self.proj(y.transpose(1, 2).reshape(*lead, length, width))


class M2PBlock(nn.Module):
    """Post-LN transformer block that attends across layers (`axis="layer"`) or memory slots (`axis="memory"`)."""

    def __init__(self, width: int, num_heads: int, intermediate_size: int, axis: str):
        super().__init__()
        self.axis = axis
        self.attn = AxisSelfAttention(width, num_heads)
        self.norm1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, intermediate_size), nn.GELU(), nn.Linear(intermediate_size, width))
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, M, W) -> (B, L, M, W)."""
        if self.axis == "layer":
            x = x.transpose(1, 2).contiguous()  # (B, M, L, W): each memory slot attends across layers
        x = self.norm1(x + self.attn(x))
        x = self.norm2(x + self.mlp(x))
        return x.transpose(1, 2) if self.axis == "layer" else x


class M2PTransformer(nn.Module):
    """Memory-to-parameter transformer: (B, L, M, H) standardised memory states -> (B, L, M, H) LoRA numbers."""

    def __init__(
        self,
        num_layers: int,
        num_slots: int,
        hidden_size: int,
        width: int,
        num_heads: int,
        intermediate_size: int,
        num_blocks: int,
    ):
        super().__init__()
        self.input_proj = nn.Linear(hidden_size, width) if width != hidden_size else nn.Identity()
        self.layer_position = nn.Parameter(torch.randn(num_layers, 1, width) * 0.02)
        self.memory_position = nn.Parameter(torch.randn(1, num_slots, width) * 0.02)
        self.blocks = nn.ModuleList(
            M2PBlock(width, num_heads, intermediate_size, "layer" if i % 2 == 0 else "memory")
            for i in range(num_blocks)
        )
        self.output_proj = nn.Linear(width, hidden_size) if width != hidden_size else nn.Identity()

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(states) + self.layer_position + self.memory_position
        for block in self.blocks:
            x = block(x)
        return self.output_proj(x)


class ShineHypernetwork(nn.Module):
    """Memory embeddings + memory-state standardisation (optional) + M2P + slicing plan of one SHINE adapter."""

    def __init__(
        self,
        plan: SlicingPlan,
        hidden_size: int,
        num_slots: int,
        width: int,
        num_heads: int,
        intermediate_size: int,
        num_blocks: int,
        lora_scale: float,
        stats_momentum: float,
        embedding_std: float,
        standardize: bool = True,
    ):
        super().__init__()
        self.plan = plan
        self.lora_scale = lora_scale
        self.memory_embeddings = nn.Parameter(torch.randn(num_slots, hidden_size) * embedding_std)
        self.standardizer = (
            MemoryStandardizer(plan.num_layers, num_slots, hidden_size, stats_momentum) if standardize else None
        )
        self.m2p = M2PTransformer(
            plan.num_layers, num_slots, hidden_size, width, num_heads, intermediate_size, num_blocks
        )

    @property
    def num_slots(self) -> int:
        return self.memory_embeddings.shape[0]

    def forward(self, memory_states: torch.Tensor, update_statistics: bool = False) -> LoraFactors:
        """(B, L, M, H) memory states -> per-module LoRA factors (float32, scaled by sqrt(lora_scale)). Without a
        standardizer the raw states go into the M2P and `update_statistics` does nothing."""
        if self.standardizer is None:
            out = self.m2p(memory_states.float())
        else:
            if update_statistics:
                self.standardizer.update(memory_states)
            out = self.m2p(self.standardizer(memory_states))
        return self.plan.slice(out.flatten(2), self.lora_scale)


def context_variance_share(factors: LoraFactors) -> dict[str, float]:
    """Share of the generated deltas' energy that varies across contexts, per module key and overall ("all").

    For contexts i = 1..B with deltas D_i = A_i B_i, returns 1 - ||mean_i D_i||^2 / mean_i ||D_i||^2: 0 when every
    context gets the same LoRA, close to 1 when the deltas are context-specific. Computed exactly from r x r Gram
    matrices, without forming any in x out delta.
    """
    shares, total_var, total_energy = {}, 0.0, 0.0
    for key, (a, b) in factors.items():
        a, b = a.detach().double(), b.detach().double()
        # inner[x, y] = <D_x, D_y>_F = sum_{r,s} (A_x^T A_y)[r, s] * (B_x B_y^T)[r, s]
        gram_a = torch.einsum("xir,yis->xyrs", a, a)
        gram_b = torch.einsum("xro,yso->xyrs", b, b)
        inner = (gram_a * gram_b).sum((-1, -2))
        energy = inner.diagonal().mean().item()
        mean_energy = inner.mean().item()
        shares[key] = 1.0 - mean_energy / energy if energy > 0 else 0.0
        total_var += energy - mean_energy
        total_energy += energy
    shares["all"] = total_var / total_energy if total_energy > 0 else 0.0
    return shares
