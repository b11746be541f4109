import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from tests.helpers import CONTEXTS, build_model, build_shine


@pytest.fixture
def absorbed_pair(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    return model, model.absorb_context(CONTEXTS[:2], tokenizer=tokenizer)


def test_exported_lora_reproduces_absorbed_logits_and_merges(absorbed_pair, tokenizer, tmp_path):
    model, absorbed = absorbed_pair
    ids = torch.tensor([tokenizer("Who signed the report?")["input_ids"]])
    with torch.no_grad():
        shine_logits = model(input_ids=ids.repeat(2, 1)).logits[1]
    absorbed[1].save_pretrained(tmp_path / "ctx1")
    files = sorted(p.name for p in (tmp_path / "ctx1").iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "shine_context.json"]
    config = json.loads((tmp_path / "ctx1" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == config["lora_alpha"] == 2
    plain = PeftModel.from_pretrained(build_model("llama", len(tokenizer)), tmp_path / "ctx1").eval()
    with torch.no_grad():
        lora_logits = plain(input_ids=ids).logits[0]
        assert (lora_logits - shine_logits).abs().max() <= 1e-4
        merged = plain.merge_and_unload()
        assert (merged(input_ids=ids).logits[0] - shine_logits).abs().max() <= 1e-4


def test_lora_state_dict_layout_matches_peft(absorbed_pair):
    _, absorbed = absorbed_pair
    state = absorbed[0].lora_state_dict()
    key = "base_model.model.model.layers.1.mlp.down_proj"
    a, b = absorbed.factors["1.mlp.down_proj"]
    assert state[f"{key}.lora_A.weight"].shape == (2, 96)  # (r, in)
    assert state[f"{key}.lora_B.weight"].shape == (64, 2)  # (out, r)
    dense = state[f"{key}.lora_B.weight"] @ state[f"{key}.lora_A.weight"]
    torch.testing.assert_close(dense, absorbed.delta_weight("1.mlp.down_proj", 0))
    torch.testing.assert_close(dense, (a[0] @ b[0]).T)


def test_multi_context_export_requires_an_index(absorbed_pair, tmp_path):
    _, absorbed = absorbed_pair
    with pytest.raises(ValueError, match=r"absorbed\[i\]"):
        absorbed.save_pretrained(tmp_path / "both")
    with pytest.raises(IndexError):
        absorbed[2]
    assert len(absorbed) == 2 and len(absorbed[-1]) == 1


def test_save_replaces_an_existing_export_atomically(absorbed_pair, tmp_path):
    _, absorbed = absorbed_pair
    target = tmp_path / "ctx"
    absorbed[0].save_pretrained(target)
    absorbed[1].save_pretrained(target)
    saved = load_file(str(target / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    torch.testing.assert_close(saved[key], absorbed.factors["0.self_attn.q_proj"][0][1].T)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shine-export-")]


def test_export_is_deterministic_and_not_private(absorbed_pair, tmp_path):
    import os
    import stat

    _, absorbed = absorbed_pair
    absorbed[0].save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"]) and len(config["target_modules"]) > 1
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "a" / "adapter_model.safetensors").stat().st_mode) == 0o666 & ~mask


def test_repr_is_a_one_line_summary_without_tensors(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    batch = model.absorb_context(CONTEXTS * 4, tokenizer)  # 12 contexts
    text = repr(batch)  # before: the dataclass repr printed every factor tensor (30-200 KB on SmolLM2)
    assert "\n" not in text and len(text) < 400 and "tensor(" not in text
    assert text.startswith("AbsorbedContext(contexts=12, rank=2,") and "(12 values)" in text
    compressed = model.absorb_context(CONTEXTS[0] * 20, tokenizer, max_lora_rank=1)
    assert f"compressed=relative error {compressed.compression_error:.3g}" in repr(compressed)
    assert f"tokens=[{batch.context_token_counts[0]}]" in repr(batch[0])
