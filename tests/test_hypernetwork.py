import math

import pytest
import torch

from peft_shine.config import ShineConfig
from peft_shine.hypernetwork import (
    M2PBlock,
    MemoryStandardizer,
    ShineHypernetwork,
    SlicingPlan,
    context_variance_share,
    module_key,
)

SHAPES = [["q", 4, 4], ["v", 4, 2]]  # D = (4 + 4) + (4 + 2) = 14


def test_memory_token_count_is_ceil_rd_over_h():
    config = ShineConfig(lora_rank=2, base_hidden_size=8, target_module_shapes=SHAPES)
    config.resolve_sizes()
    assert config.generated_numbers_per_layer == 28
    assert config.num_memory_tokens == math.ceil(28 / 8) == 4
    with pytest.raises(ValueError, match="at least 4"):
        ShineConfig(lora_rank=2, base_hidden_size=8, target_module_shapes=SHAPES, num_memory_tokens=3).resolve_sizes()


def test_slicing_order_and_scale_on_hand_checked_case():
    plan = SlicingPlan(module_shapes=(("q", 4, 4), ("v", 4, 2)), rank=2, num_layers=2)
    flat = torch.arange(2 * 2 * 32, dtype=torch.float32).reshape(2, 2, 32)  # B=2, L=2, M*H = 4*8 = 32 >= 28
    factors = plan.slice(flat, scale=0.25)  # sqrt(0.25) = 0.5
    a_q, b_q = factors[module_key(1, "q")]
    a_v, b_v = factors[module_key(1, "v")]
    row = flat[1, 1]  # context 1, layer 1
    assert torch.equal(a_q[1], 0.5 * row[0:8].reshape(4, 2))  # A (in, r) row-major first
    assert torch.equal(b_q[1], 0.5 * row[8:16].reshape(2, 4))  # then B (r, out)
    assert torch.equal(a_v[1], 0.5 * row[16:24].reshape(4, 2))
    assert torch.equal(b_v[1], 0.5 * row[24:28].reshape(2, 2))  # numbers 28..31 are ignored
    assert set(factors) == {"0.q", "0.v", "1.q", "1.v"}


def test_standardizer_pools_exact_statistics_then_uses_momentum():
    torch.manual_seed(0)
    standardizer = MemoryStandardizer(num_layers=2, num_slots=3, hidden_size=4, momentum=0.01)
    batches = [torch.randn(5, 2, 3, 4) * 7 + 100 for _ in range(3)]
    for batch in batches:
        standardizer.update(batch)
    everything = torch.cat(batches)
    torch.testing.assert_close(standardizer.running_mean, everything.mean(0))
    torch.testing.assert_close(standardizer.running_var, everything.var(0, unbiased=False))
    assert int(standardizer.num_contexts_tracked) == 15
    out = standardizer(everything)
    torch.testing.assert_close(out.mean(0), torch.zeros(2, 3, 4), atol=1e-4, rtol=0)


def test_layer_axis_block_keeps_memory_slots_apart():
    torch.manual_seed(0)
    block = M2PBlock(width=8, num_heads=2, intermediate_size=16, axis="layer")
    x = torch.randn(1, 3, 4, 8)  # (B, L, M, W)
    y = block(x)
    x2 = x.clone()
    x2[:, :, 1] += 1.0  # change memory slot 1 in every layer
    y2 = block(x2)
    assert torch.equal(y[:, :, 0], y2[:, :, 0]) and not torch.allclose(y[:, :, 1], y2[:, :, 1])
    memory_block = M2PBlock(width=8, num_heads=2, intermediate_size=16, axis="memory")
    x3 = x.clone()
    x3[:, 2] += 1.0  # change layer 2
    assert torch.equal(memory_block(x)[:, 0], memory_block(x3)[:, 0])


def test_variance_share_exact_against_dense_deltas():
    torch.manual_seed(0)
    a, b = torch.randn(3, 5, 2), torch.randn(3, 2, 4)
    deltas = a @ b
    expected = 1 - deltas.mean(0).pow(2).sum() / deltas.pow(2).sum((1, 2)).mean()
    share = context_variance_share({"m": (a, b)})
    assert share["m"] == pytest.approx(expected.item(), rel=1e-6)
    same = context_variance_share({"m": (a[:1].expand(3, -1, -1), b[:1].expand(3, -1, -1))})
    assert abs(same["all"]) < 1e-9


def test_standardisation_keeps_context_signal_under_massive_activations():
    """States = huge context-independent offsets (as SmolLM2's massive activations) + small per-context signal."""
    torch.manual_seed(0)
    plan = SlicingPlan(module_shapes=(("q", 8, 8),), rank=2, num_layers=2)
    hypernetwork = ShineHypernetwork(
        plan,
        hidden_size=8,
        num_slots=4,
        width=8,
        num_heads=2,
        intermediate_size=16,
        num_blocks=2,
        lora_scale=1e-3,
        stats_momentum=0.01,
        embedding_std=1.0,
    )
    offset = torch.randn(2, 4, 8) * 5000
    states = offset + 0.5 * torch.randn(16, 2, 4, 8)
    before = context_variance_share(hypernetwork(states))["all"]
    hypernetwork(states, update_statistics=True)
    after = context_variance_share(hypernetwork(states))["all"]
    assert before < 0.05 < 0.5 < after
