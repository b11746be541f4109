import pytest
import torch
from torch import nn

from peft_shine.layer import ShineLinear, ShineRuntime, ShineState, rows_to_contexts


def make_layer():
    torch.manual_seed(0)
    runtime = ShineRuntime()
    layer = ShineLinear(nn.Linear(6, 5), "default", meta_lora_rank=3, runtime=runtime, key="0.proj")
    nn.init.normal_(layer.shine_meta_B["default"].weight)
    return layer, runtime


def test_generated_lora_per_row_equals_hand_computation():
    layer, runtime = make_layer()
    a, b = torch.randn(2, 6, 2), torch.randn(2, 2, 5)  # 2 contexts
    x = torch.randn(4, 3, 6)  # 4 rows -> contexts [0, 0, 1, 1]
    with runtime.using(ShineState("answer", {"0.proj": (a, b)})):
        y = layer(x)
    w, bias = layer.base_layer.weight, layer.base_layer.bias
    for row, context in enumerate([0, 0, 1, 1]):
        expected = x[row] @ w.T + bias + (x[row] @ a[context]) @ b[context]
        torch.testing.assert_close(y[row], expected, atol=1e-6, rtol=1e-6)


def test_encode_mode_adds_meta_lora_and_base_mode_is_exact():
    layer, runtime = make_layer()
    x = torch.randn(2, 3, 6)
    base = layer.base_layer(x)
    assert torch.equal(layer(x), base)
    with runtime.using(ShineState("encode")):
        y = layer(x)
    meta = layer.shine_meta_B["default"].weight @ layer.shine_meta_A["default"].weight  # (out, in)
    torch.testing.assert_close(y, base + x @ meta.T, atol=1e-6, rtol=1e-6)
    assert runtime.state.mode == "base"


def test_runtime_restores_state_on_exception():
    runtime = ShineRuntime()
    with pytest.raises(RuntimeError):
        with runtime.using(ShineState("encode")):
            raise RuntimeError("boom")
    assert runtime.state.mode == "base"


def test_rows_to_contexts_is_context_major_and_rejects_mismatch():
    assert rows_to_contexts(3, 3) is None
    assert rows_to_contexts(6, 2).tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="multiple of the context count"):
        rows_to_contexts(5, 2)


def test_merge_is_refused_with_export_hint():
    layer, _ = make_layer()
    with pytest.raises(NotImplementedError, match="save_pretrained"):
        layer.merge()
