"""What PEFT's own suite checks, checked by our own tests (issue 22; PEFT's suite itself runs in tests/peft_suite/):
the three bugs it found (PeftType `.value`, `low_cpu_mem_usage=True` loading, reentrant activation checkpointing),
the error for a model SHINE cannot adapt, and what PEFT checks that our lifecycle tests did not: `inputs_embeds`,
`get_base_model_state_dict` / `set_base_model_state_dict`, `device_map`, float16 generation,
`prepare_model_for_kbit_training`, hotswap.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import (
    PeftModel,
    get_base_model_state_dict,
    get_peft_model,
    prepare_model_for_kbit_training,
    set_base_model_state_dict,
    set_peft_model_state_dict,
)
from peft.utils import load_peft_weights
from peft.utils.hotswap import hotswap_adapter
from torch import nn
from transformers import AutoModelForCausalLM

from peft_shine import ShineConfig, ShineLinear
from peft_shine.tokenization import question_prompt_ids
from tests.helpers import CONTEXTS, SMALL_SHINE, build_model, build_shine

# float16 vs float32 base, same adapter (tiny test model, adapter seeds 0-2, measured 2026-12-05):
FP16_LOGITS_ATOL = 2e-3  # max |logit difference| with a context absorbed; measured 5.0e-4 - 5.8e-4 (base alone
# 4.6e-4), while the adapter itself moves the logits by 0.031 - 0.059


def factors_equal(first, second) -> bool:
    return first.keys() == second.keys() and all(
        torch.equal(a, second[key][0]) and torch.equal(b, second[key][1]) for key, (a, b) in first.items()
    )


def training_batch(tokenizer) -> dict[str, torch.Tensor]:
    context = tokenizer(CONTEXTS[:2], padding=True, padding_side="left", return_tensors="pt")
    inputs = tokenizer(["Mary is in the kitchen.", "It was built in 1871."], padding=True, return_tensors="pt")
    return dict(
        input_ids=inputs.input_ids,
        attention_mask=inputs.attention_mask,
        labels=inputs.input_ids,
        context_input_ids=context.input_ids,
        context_attention_mask=context.attention_mask,
    )


def loss_and_gradients(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The training loss and the gradient of every trainable parameter (None for a parameter that got none)."""
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def assert_same_training_step(reference, other) -> None:
    torch.testing.assert_close(reference[0], other[0])
    assert reference[1].keys() == other[1].keys()
    for name, grad in reference[1].items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, other[1][name], atol=1e-6, rtol=1e-4, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# PeftType


def test_the_peft_type_reads_like_a_peft_type_member(tmp_path):
    config = ShineConfig()
    assert (config.peft_type.value, config.peft_type.name) == ("SHINE", "SHINE")
    assert config.peft_type == "SHINE" and str(config.peft_type) == "PeftType.SHINE"
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "SHINE"


def test_a_mixed_model_is_refused_with_peft_own_message():
    with pytest.raises(
        ValueError, match="The provided `peft_type` 'SHINE' is not compatible with the `PeftMixedModel`"
    ):
        get_peft_model(build_model(), ShineConfig(**SMALL_SHINE), mixed=True)


# ---------------------------------------------------------------------------------------------------------------------
# Loading


@pytest.fixture
def saved_adapter(tmp_path, tokenizer):
    """A tiny SHINE adapter with non-zero meta-LoRA B and calibrated statistics, saved to a folder."""
    model = build_shine(vocab_size=len(tokenizer))
    model.base_model.calibrate_memory_statistics(CONTEXTS, tokenizer=tokenizer)
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def absorbed_factors(model: PeftModel, tokenizer) -> dict:
    return model.absorb_context(CONTEXTS[:2], tokenizer=tokenizer).factors


def test_low_cpu_mem_usage_loads_the_same_adapter(saved_adapter, tokenizer):
    plain = PeftModel.from_pretrained(build_model(vocab_size=len(tokenizer)), saved_adapter)
    low = PeftModel.from_pretrained(build_model(vocab_size=len(tokenizer)), saved_adapter, low_cpu_mem_usage=True)
    assert {p.device.type for p in low.parameters()} | {b.device.type for b in low.buffers()} == {"cpu"}
    expected = plain.state_dict()
    assert low.state_dict().keys() == expected.keys()
    assert all(torch.equal(tensor, expected[name]) for name, tensor in low.state_dict().items())
    assert {n for n, p in low.named_parameters() if p.requires_grad} == set()  # inference mode, as without it
    assert factors_equal(absorbed_factors(low, tokenizer), absorbed_factors(plain, tokenizer))


def test_device_map_cpu_loads_the_same_adapter(saved_adapter, saved_base, tokenizer):
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), saved_adapter)
    base = AutoModelForCausalLM.from_pretrained(saved_base, device_map="cpu")
    mapped = PeftModel.from_pretrained(base, saved_adapter, device_map={"": "cpu"})
    assert {p.device.type for p in mapped.base_model.hypernetwork.parameters()} == {"cpu"}
    assert factors_equal(absorbed_factors(mapped, tokenizer), absorbed_factors(plain, tokenizer))


def test_a_plain_torch_module_is_refused_with_what_shine_needs():
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin0 = nn.Linear(8, 8)

    with pytest.raises(TypeError, match="transformers causal language model with decoder layers.*got MLP"):
        get_peft_model(MLP(), ShineConfig(**SMALL_SHINE))


def test_init_weights_false_starts_the_meta_lora_non_zero_and_is_saved(tmp_path):
    layers = [
        m for m in get_peft_model(build_model(), ShineConfig(**SMALL_SHINE)).modules() if isinstance(m, ShineLinear)
    ]
    assert all(not m.shine_meta_B["default"].weight.any() for m in layers)
    model = get_peft_model(build_model(), ShineConfig(**SMALL_SHINE, init_weights=False))
    assert all(m.shine_meta_B["default"].weight.any() for m in model.modules() if isinstance(m, ShineLinear))
    model.save_pretrained(tmp_path)
    assert ShineConfig.from_pretrained(tmp_path).init_weights is False


# ---------------------------------------------------------------------------------------------------------------------
# Activation checkpointing, prepare_model_for_kbit_training


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_activation_checkpointing_trains_exactly_like_without(tokenizer, use_reentrant):
    batch = training_batch(tokenizer)
    reference = loss_and_gradients(build_shine(vocab_size=len(tokenizer)).train(), batch)
    model = build_shine(vocab_size=len(tokenizer)).train()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert_same_training_step(reference, loss_and_gradients(model, batch))
    assert_same_training_step(reference, loss_and_gradients(model, batch))  # a second step: nothing left over
    assert model.base_model.runtime.state.mode == "base"


def test_prepare_model_for_kbit_training_then_shine_trains(tokenizer):
    """On a half-precision base (what it applies to without a quantization library): the base is frozen and cast to
    float32, and SHINE then trains with the reentrant checkpointing kbit training uses, as without checkpointing."""
    batch = training_batch(tokenizer)

    def prepared(checkpointing: bool):
        base = prepare_model_for_kbit_training(build_model(vocab_size=len(tokenizer)).to(torch.bfloat16))
        assert {p.dtype for p in base.parameters()} == {torch.float32}
        assert not any(p.requires_grad for p in base.parameters())
        torch.manual_seed(0)
        model = get_peft_model(base, ShineConfig(**SMALL_SHINE, init_weights=False)).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
            model.enable_input_require_grads()
        return model

    assert_same_training_step(loss_and_gradients(prepared(False), batch), loss_and_gradients(prepared(True), batch))


# ---------------------------------------------------------------------------------------------------------------------
# inputs_embeds


@pytest.fixture
def absorbed_model(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    with torch.no_grad():  # a sharper head, so that the adapter visibly changes greedy tokens
        model.get_base_model().lm_head.weight.mul_(25)
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    return model


def test_inputs_embeds_answer_with_the_absorbed_context(absorbed_model, tokenizer):
    ids = torch.tensor([question_prompt_ids(tokenizer, "Who built the lighthouse?")])
    embeds = absorbed_model.get_input_embeddings()(ids)
    with torch.no_grad():
        from_ids = absorbed_model(input_ids=ids).logits
        from_embeds = absorbed_model(inputs_embeds=embeds).logits
        with absorbed_model.disable_adapter():
            base = absorbed_model(inputs_embeds=embeds).logits
    torch.testing.assert_close(from_embeds, from_ids)
    assert not torch.allclose(from_embeds, base, atol=1e-4)

    generate = dict(max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new_from_ids = absorbed_model.generate(input_ids=ids, **generate)[:, ids.shape[1] :]
    new_from_embeds = absorbed_model.generate(inputs_embeds=embeds, **generate)  # only the new tokens
    assert torch.equal(new_from_embeds, new_from_ids)


def test_inputs_embeds_train_like_input_ids(tokenizer):
    batch = training_batch(tokenizer)
    reference = loss_and_gradients(build_shine(vocab_size=len(tokenizer)).train(), batch)
    model = build_shine(vocab_size=len(tokenizer)).train()
    embeds = model.get_input_embeddings()(batch.pop("input_ids"))
    assert_same_training_step(reference, loss_and_gradients(model, {**batch, "inputs_embeds": embeds}))


# ---------------------------------------------------------------------------------------------------------------------
# Base model state dict


def test_base_model_state_dict_is_the_base_and_sets_back_without_touching_shine(tokenizer):
    base = build_model(vocab_size=len(tokenizer))
    original = {name: tensor.clone() for name, tensor in base.state_dict().items()}
    model = build_shine(vocab_size=len(tokenizer))
    shine_before = {n: t.clone() for n, t in model.state_dict().items() if "shine_" in n}
    extracted = get_base_model_state_dict(model)
    assert extracted.keys() == original.keys()
    assert all(torch.equal(extracted[name], tensor) for name, tensor in original.items())

    with torch.no_grad():
        for name, param in model.get_base_model().named_parameters():
            if "shine_" not in name:
                param.add_(torch.randn_like(param))
    result = set_base_model_state_dict(model, original)
    assert not result.missing_keys and not result.unexpected_keys
    restored = get_base_model_state_dict(model)
    assert all(torch.equal(restored[name], tensor) for name, tensor in original.items())
    assert all(torch.equal(model.state_dict()[n], t) for n, t in shine_before.items())


# ---------------------------------------------------------------------------------------------------------------------
# float16


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float16_base_absorbs_generates_and_stays_close_to_float32(saved_base, tokenizer, tmp_path, seed):
    torch.manual_seed(seed)
    adapter = tmp_path / "adapter"
    trained = get_peft_model(
        AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(**SMALL_SHINE, init_weights=False)
    )
    trained.save_pretrained(adapter)
    fp32 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), adapter)
    fp16 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base, dtype=torch.float16), adapter)
    prompt = torch.tensor([question_prompt_ids(tokenizer, "Who built the lighthouse?")])
    logits = []
    for model in (fp32, fp16):
        absorbed = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
        assert all(
            a.dtype == torch.float32 and a.isfinite().all() and b.isfinite().all() for a, b in absorbed.factors.values()
        )
        with torch.no_grad():
            logits.append(model(input_ids=prompt).logits.float())
        output = model.generate(input_ids=prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
        assert output.shape == (1, prompt.shape[1] + 4)
    assert fp16.get_base_model().dtype == torch.float16
    assert (logits[1] - logits[0]).abs().max().item() <= FP16_LOGITS_ATOL


# ---------------------------------------------------------------------------------------------------------------------
# Hotswap


def test_hotswap_is_refused_by_peft_before_anything_changes_and_the_state_dict_swap_works(tokenizer, tmp_path):
    model = build_shine(vocab_size=len(tokenizer))
    other = build_shine(vocab_size=len(tokenizer))  # the same base, another adapter:
    with torch.no_grad():
        for name, param in other.named_parameters():
            if "shine_" in name:
                param.add_(0.1 * torch.randn_like(param))
    other.base_model.calibrate_memory_statistics(CONTEXTS, tokenizer=tokenizer)
    other.save_pretrained(tmp_path / "other")
    assert not factors_equal(absorbed_factors(model, tokenizer), absorbed_factors(other, tokenizer))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    with pytest.raises(ValueError, match="Hotswapping only supports LORA but SHINE was passed"):
        hotswap_adapter(model, str(tmp_path / "other"), adapter_name="default")
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in before.items())

    result = set_peft_model_state_dict(model, load_peft_weights(str(tmp_path / "other")))
    assert not result.unexpected_keys and not [k for k in result.missing_keys if "shine_" in k]
    assert factors_equal(absorbed_factors(model, tokenizer), absorbed_factors(other, tokenizer))
