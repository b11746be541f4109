"""Config validation, PEFT registration, and every PEFT loading path on a saved SHINE adapter (offline)."""

import json
import shutil

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

import peft_shine  # noqa: F401
from peft_shine import ShineConfig, ShineModel
from tests.helpers import CONTEXTS, build_model, build_shine


def test_config_validation_errors_name_the_problem():
    with pytest.raises(ValueError, match="even"):
        ShineConfig(m2p_layers=3)
    with pytest.raises(ValueError, match="lora_rank"):
        ShineConfig(lora_rank=0)
    with pytest.raises(ValueError, match="context_overflow"):
        ShineConfig(context_overflow="drop")
    assert ShineConfig().peft_type == "SHINE" and ShineConfig().task_type == "CAUSAL_LM"


def test_registration_tables():
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    assert PEFT_TYPE_TO_CONFIG_MAPPING["SHINE"] is ShineConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING["SHINE"] is ShineModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING["SHINE"] == "shine_"


@pytest.fixture
def saved_adapter(tmp_path, saved_base, tokenizer):
    """A SHINE adapter on the saved tiny base, with calibrated statistics, saved with its tokenizer."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(lora_rank=2, m2p_layers=2))
    model.base_model.calibrate_memory_statistics(CONTEXTS, tokenizer=tokenizer)
    model.requires_grad_(False)  # as loaded for inference: CPU attention kernels differ by ~1e-8 with requires_grad
    expected = model.absorb_context(CONTEXTS[0])
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", expected


def assert_same_factors(a, b):
    assert a.factors.keys() == b.factors.keys()
    for key in a.factors:
        assert torch.equal(a.factors[key][0], b.factors[key][0]) and torch.equal(a.factors[key][1], b.factors[key][1])


def test_save_writes_safetensors_config_and_model_card_only(saved_adapter):
    """Like any PEFT adapter: the tokenizer is the base's and is saved by the Trainer (`processing_class`) or by the
    user, not by the config (see test_training: the example scripts' output holds tokenizer.json)."""
    path, _ = saved_adapter
    files = {p.name for p in path.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["peft_type"] == "SHINE" and config["base_model_type"] == "llama"
    from safetensors.torch import load_file

    keys = load_file(str(path / "adapter_model.safetensors")).keys()
    assert "base_model.shine_hypernetwork.standardizer.running_mean" in keys
    assert "base_model.shine_hypernetwork.memory_embeddings" in keys
    assert any(k.endswith("q_proj.shine_meta_A.weight") for k in keys)


def test_every_peft_loading_path_round_trips_exactly(saved_adapter, saved_base):
    path, expected = saved_adapter
    assert isinstance(PeftConfig.from_pretrained(path), ShineConfig)
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), path)
    assert_same_factors(loaded.absorb_context(CONTEXTS[0]), expected)  # tokenizer found next to the adapter
    auto = AutoPeftModelForCausalLM.from_pretrained(path)
    assert_same_factors(auto.absorb_context(CONTEXTS[0]), expected)
    renamed = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), path, adapter_name="x")
    assert_same_factors(renamed.absorb_context(CONTEXTS[0]), expected)


def test_loading_by_hub_id_from_a_populated_local_cache(saved_adapter, saved_base, tmp_path):
    path, expected = saved_adapter
    repo = tmp_path / "hub" / "models--me--shine-tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(path, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    base = AutoModelForCausalLM.from_pretrained(saved_base)
    model = PeftModel.from_pretrained(base, "me/shine-tiny", cache_dir=str(tmp_path / "hub"))
    assert_same_factors(model.absorb_context(CONTEXTS[0]), expected)


def test_push_to_hub_uploads_exactly_the_adapter_files(saved_base, tokenizer, monkeypatch):
    import transformers.utils.hub as hub

    uploaded = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

        def create_commit(self, repo_id, operations, **kwargs):
            for op in operations:
                uploaded[op.path_in_repo] = open(op.path_or_fileobj, "rb").read()
            return "commit-url"

    class FakeCard:
        def save(self, path):
            open(path, "w").write("card")

    monkeypatch.setattr(hub, "hf_api", lambda: FakeApi())
    monkeypatch.setattr(hub, "create_and_tag_model_card", lambda *a, **k: FakeCard())
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(lora_rank=2, m2p_layers=2))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    model.push_to_hub("me/shine-tiny")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} == set(uploaded)
    assert not [f for f in uploaded if f.endswith((".bin", ".pt"))]


def test_loading_onto_another_base_names_both(saved_adapter, tokenizer):
    path, _ = saved_adapter
    wider = build_model("qwen2", len(tokenizer))
    with pytest.raises(ValueError, match=r"built for a base with .*'llama'.*has .*'qwen2'"):
        PeftModel.from_pretrained(wider, path)


def test_trainable_after_loading_with_is_trainable(saved_adapter, saved_base):
    path, _ = saved_adapter
    frozen = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), path)
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(saved_base), path, is_trainable=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert any("memory_embeddings" in n for n in names) and any("shine_meta_A" in n for n in names)


def test_only_one_shine_adapter_per_model(tokenizer):
    model = build_shine(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="one SHINE adapter"):
        model.add_adapter("second", ShineConfig(lora_rank=2, m2p_layers=2))
    assert build_model is not None
