"""PEFT lifecycle conformance of SHINE (issue 12), in the style PEFT tests its own tuners: every method PEFT offers
on a `PeftModel` either does for a SHINE adapter what it does for LoRA, or fails with one clear error before it changes
anything.

Tests marked `xfail(strict=True, reason="issue 12: ...")` describe behaviour that is missing today; the marker turns
into an error (XPASS) when the feature lands, so remove it then.

Chosen behaviour where PEFT leaves a choice:
- `disable_adapter()` makes the forward compute the base model exactly; a context absorbed inside it gets the same
  LoRA as outside (the encode pass keeps the meta-LoRA), and is used once the block ends.
- One SHINE adapter per model: `add_adapter` / `load_adapter` of a second one raise ValueError before the model
  changes; `delete_adapter` removes the hypernetwork and the meta-LoRA, and the model computes the base.
- `target_modules` / `exclude_modules` / `layers_to_transform` / `layers_pattern` mean what they mean for LoRA;
  the hypernetwork's layer axis is the targeted layers (the LoRA of layer i is written from layer i's memory).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers import AutoModelForCausalLM

from peft_shine import ShineConfig, ShineLinear
from peft_shine.structure import DecoderStructure, find_decoder_layers, resolve_targets
from tests.helpers import ARCHITECTURES, CONTEXTS, LLAMA_LAYER, SMALL_SHINE, build_model

ARCHS = list(ARCHITECTURES)


def issue(reason: str):
    return pytest.mark.xfail(strict=True, reason=f"issue 12: {reason}")


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def make_shine(architecture: str = "llama", vocab_size: int = 400, base: nn.Module | None = None, **overrides):
    """A tiny base wrapped with SHINE (meta-LoRA B made non-zero, as after training) and the names of the parameters
    SHINE added (found by identity: every parameter that is not one of the base model's own)."""
    base = build_model(architecture, vocab_size) if base is None else base
    base_parameters = {id(p) for p in base.parameters()}
    model = get_peft_model(base, ShineConfig(**{**SMALL_SHINE, **overrides}))
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, ShineLinear):
            for meta_b in module.shine_meta_B.values():
                nn.init.normal_(meta_b.weight, std=0.02)
    added = {name for name, p in model.named_parameters() if id(p) not in base_parameters}
    return model.eval(), added


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def trainable(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def shine_module_names(model: PeftModel) -> set[str]:
    """Names (in the transformers model) of the modules that hold a ShineLinear."""
    return {name for name, module in model.base_model.model.named_modules() if isinstance(module, ShineLinear)}


def assert_same_factors(first, second) -> None:
    assert first.factors.keys() == second.factors.keys()
    for key, (a, b) in first.factors.items():
        assert torch.equal(a, second.factors[key][0]), key
        assert torch.equal(b, second.factors[key][1]), key


def paths(relative: list[str], layers: tuple[int, ...] = (0, 1)) -> set[str]:
    return {f"model.layers.{i}.{name}" for i in layers for name in relative}


@pytest.fixture
def ids(tokenizer) -> torch.Tensor:
    return torch.tensor([tokenizer("Where is Mary? She is in the")["input_ids"]])


# ---------------------------------------------------------------------------------------------------------------------
# disable_adapter


@pytest.mark.parametrize("architecture", ARCHS)
def test_disable_adapter_computes_exactly_the_base(architecture, tokenizer, ids):
    reference = logits(build_model(architecture, len(tokenizer)), ids)
    model, _ = make_shine(architecture, len(tokenizer))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    adapted = logits(model, ids)
    assert not torch.allclose(adapted, reference)
    with model.disable_adapter():
        assert torch.equal(logits(model, ids), reference)
        assert model.get_model_status().enabled is False
    assert torch.equal(logits(model, ids), adapted)
    assert model.get_model_status().enabled is True


@pytest.mark.parametrize("architecture", ARCHS)
def test_absorbing_inside_disable_adapter_writes_the_same_lora(architecture, tokenizer, ids):
    """Chosen behaviour: disable_adapter() only makes the forward compute the base model; the LoRA a context gets is a
    function of the adapter and the text, so the encode pass keeps its meta-LoRA (a reference-model pass of a trainer,
    `with model.disable_adapter(): model(..., context_input_ids=...)`, must not fail either)."""
    reference = logits(build_model(architecture, len(tokenizer)), ids)
    model, _ = make_shine(architecture, len(tokenizer))
    outside = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    with model.disable_adapter():
        inside = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
        assert torch.equal(logits(model, ids), reference)
    assert_same_factors(inside, outside)


# ---------------------------------------------------------------------------------------------------------------------
# delete_adapter / unload


@pytest.mark.parametrize("architecture", ARCHS)
def test_delete_adapter_removes_the_hypernetwork_and_computes_the_base(architecture, tokenizer, ids):
    vocab = len(tokenizer)
    reference = logits(build_model(architecture, vocab), ids)
    model, added = make_shine(architecture, vocab)
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    model.delete_adapter("default")
    assert model.peft_config == {}
    left = {name for name, _ in model.named_parameters()} & added
    assert not left, f"SHINE parameters left after delete_adapter: {sorted(left)[:4]}"
    # PeftModel.forward needs an active adapter (also for LoRA); the wrapped transformers model computes the base.
    assert torch.equal(logits(model.base_model.model, ids), reference)
    with pytest.raises(ValueError, match="(?i)adapter"):
        model.absorb_context(CONTEXTS[1], tokenizer=tokenizer)


def test_delete_unknown_adapter_raises(tokenizer):
    model, _ = make_shine(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="does not exist"):
        model.delete_adapter("other")
    assert list(model.peft_config) == ["default"]


@pytest.mark.parametrize("architecture", ARCHS)
def test_unload_returns_the_plain_base(architecture, tokenizer, ids):
    reference = logits(build_model(architecture, len(tokenizer)), ids)
    model, _ = make_shine(architecture, len(tokenizer))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    base = model.unload()
    assert not [name for name, module in base.named_modules() if isinstance(module, ShineLinear)]
    assert not [name for name, _ in base.named_parameters() if "shine" in name]
    assert torch.equal(logits(base, ids), reference)


def test_merge_and_unload_is_refused_with_the_way_out(tokenizer):
    model, _ = make_shine(vocab_size=len(tokenizer))
    with pytest.raises(NotImplementedError, match="save_pretrained"):
        model.merge_and_unload()


# ---------------------------------------------------------------------------------------------------------------------
# Trainable parameters: set_requires_grad, set_adapter(inference_mode=...), structure rather than names


def test_trainable_parameters_are_exactly_what_shine_added(tokenizer):
    model, added = make_shine(vocab_size=len(tokenizer))
    assert trainable(model) == added
    assert any("memory_embeddings" in name for name in added) and any("meta_A" in name for name in added)


def test_set_requires_grad_covers_the_hypernetwork(tokenizer):
    model, added = make_shine(vocab_size=len(tokenizer))
    model.set_requires_grad("default", requires_grad=False)
    assert trainable(model) == set()
    model.set_requires_grad("default", requires_grad=True)
    assert trainable(model) == added


def test_set_adapter_inference_mode_freezes_the_hypernetwork(tokenizer):
    model, added = make_shine(vocab_size=len(tokenizer))
    model.set_adapter("default", inference_mode=True)
    assert trainable(model) == set()
    assert model.get_model_status().requires_grad == {"default": False}
    model.set_adapter("default")
    assert trainable(model) == added


class Renamed(nn.Module):
    """Wraps a base module under a child name that contains SHINE's prefix "shine_"."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.shine_inner = inner

    def forward(self, *args, **kwargs):
        return self.shine_inner(*args, **kwargs)


def base_with_a_shine_named_norm(vocab_size: int) -> nn.Module:
    base = build_model("llama", vocab_size)
    base.model.norm = Renamed(base.model.norm)  # its weight: "model.norm.shine_inner.weight"
    return base


def test_base_parameters_named_like_shine_stay_frozen(tokenizer):
    model, added = make_shine(base=base_with_a_shine_named_norm(len(tokenizer)))
    assert not model.base_model.model.model.norm.shine_inner.weight.requires_grad
    assert trainable(model) == added


def test_base_parameters_named_like_shine_are_not_saved(tokenizer, tmp_path):
    from safetensors.torch import load_file

    model, _ = make_shine(base=base_with_a_shine_named_norm(len(tokenizer)))
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert not [key for key in saved if "shine_inner" in key]


# ---------------------------------------------------------------------------------------------------------------------
# get_model_status / get_layer_status / print_trainable_parameters


@pytest.mark.parametrize("architecture", ARCHS)
def test_layer_status_lists_every_shine_layer(architecture, tokenizer):
    model, _ = make_shine(architecture, len(tokenizer))
    statuses = model.get_layer_status()
    # get_layer_status names modules from the tuner, whose transformers model is its child "model"
    assert {status.name for status in statuses} == {f"model.{name}" for name in shine_module_names(model)}
    for status in statuses:
        assert status.module_type.startswith("shine.")
        assert status.enabled is True
        assert status.active_adapters == ["default"] and status.available_adapters == ["default"]
        assert status.merged_adapters == []
        assert status.requires_grad == {"default": True}
        assert status.devices == {"default": ["cpu"]}


def test_model_status_counts_the_hypernetwork(tokenizer):
    model, added = make_shine(vocab_size=len(tokenizer))
    status = model.get_model_status()
    sizes = dict((name, p.numel()) for name, p in model.named_parameters())
    assert status.adapter_model_type == "ShineModel"
    assert status.base_model_type == "LlamaForCausalLM"
    assert status.num_adapter_layers == len(shine_module_names(model)) == 2 * len(LLAMA_LAYER)
    assert status.trainable_params == sum(sizes[name] for name in added)
    assert status.total_params == sum(sizes.values())
    assert (status.enabled, status.active_adapters, status.available_adapters) == (True, ["default"], ["default"])
    assert status.merged_adapters == [] and status.requires_grad == {"default": True}


def test_model_status_names_the_peft_type(tokenizer):
    model, _ = make_shine(vocab_size=len(tokenizer))
    assert model.get_model_status().peft_types == {"default": "SHINE"}


def test_print_trainable_parameters_counts_the_hypernetwork(tokenizer, capsys):
    model, added = make_shine(vocab_size=len(tokenizer))
    sizes = dict((name, p.numel()) for name, p in model.named_parameters())
    hypernetwork = sum(p.numel() for p in model.base_model.shine_hypernetwork.parameters())
    model.print_trainable_parameters()
    printed = capsys.readouterr().out
    found = re.search(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+)", printed)
    assert found, printed
    counted, total = (int(group.replace(",", "")) for group in found.groups())
    assert counted == sum(sizes[name] for name in added) > hypernetwork > 0
    assert total == sum(sizes.values())


# ---------------------------------------------------------------------------------------------------------------------
# save_pretrained(selected_adapters=...) / PeftModel.from_pretrained


@pytest.mark.parametrize("architecture", ARCHS)
def test_selected_adapter_saves_and_reloads_to_identical_loras(architecture, tokenizer, ids, tmp_path):
    vocab = len(tokenizer)
    model, _ = make_shine(architecture, vocab)
    model.calibrate_memory_statistics(CONTEXTS, tokenizer=tokenizer)  # non-trivial buffers must travel too
    original = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    model.save_pretrained(tmp_path, selected_adapters=["default"])
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()
    loaded = PeftModel.from_pretrained(build_model(architecture, vocab), tmp_path)
    assert shine_module_names(loaded) == shine_module_names(model)
    again = loaded.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    assert_same_factors(again, original)
    assert torch.equal(logits(loaded, ids), logits(model, ids))


def test_save_refuses_an_unknown_selected_adapter(tokenizer, tmp_path):
    model, _ = make_shine(vocab_size=len(tokenizer))
    with pytest.raises(ValueError, match="selected_adapters"):
        model.save_pretrained(tmp_path, selected_adapters=["other"])
    assert not (tmp_path / "adapter_model.safetensors").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Several SHINE adapters on one model: chosen behaviour, one clear error, raised before anything changes


def snapshot(model: PeftModel) -> dict:
    return {
        "state": {name: tensor.clone() for name, tensor in model.state_dict().items()},
        "modules": [name for name, _ in model.named_modules()],
        "trainable": trainable(model),
        "configs": list(model.peft_config),
        "active": model.active_adapter,
    }


def assert_unchanged(model: PeftModel, before: dict) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"]
    assert after["configs"] == before["configs"] and after["active"] == before["active"]
    assert after["trainable"] == before["trainable"]
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][name], tensor) for name, tensor in before["state"].items())


def test_second_shine_adapter_is_refused_before_the_model_changes(tokenizer, ids):
    model, _ = make_shine(vocab_size=len(tokenizer))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    adapted, before = logits(model, ids), snapshot(model)
    with pytest.raises(ValueError, match="one SHINE adapter"):
        model.add_adapter("second", ShineConfig(**SMALL_SHINE))
    assert_unchanged(model, before)
    assert torch.equal(logits(model, ids), adapted)


def test_loading_a_second_shine_adapter_is_refused_before_the_model_changes(tokenizer, ids, tmp_path):
    donor, _ = make_shine(vocab_size=len(tokenizer))
    donor.save_pretrained(tmp_path)
    model, _ = make_shine(vocab_size=len(tokenizer))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    adapted, before = logits(model, ids), snapshot(model)
    with pytest.raises(ValueError, match="one SHINE adapter"):
        model.load_adapter(tmp_path, adapter_name="second")
    assert_unchanged(model, before)
    assert torch.equal(logits(model, ids), adapted)
    with pytest.raises(ValueError, match="not found"):
        model.set_adapter("second")


# ---------------------------------------------------------------------------------------------------------------------
# target_modules / exclude_modules / layers_to_transform with PEFT's meaning, on the tuner


TARGET_CASES = [
    pytest.param({"target_modules": ["down_proj"]}, paths(["mlp.down_proj"]), id="list-name"),
    pytest.param(
        {"target_modules": ["mlp.down_proj", "q_proj"]}, paths(["self_attn.q_proj", "mlp.down_proj"]), id="list-suffix"
    ),
    pytest.param({"target_modules": None}, paths(LLAMA_LAYER), id="none"),
    pytest.param({"target_modules": "all-linear"}, paths(LLAMA_LAYER), id="all-linear"),
    pytest.param({"target_modules": r".*\.mlp\.down_proj"}, paths(["mlp.down_proj"]), id="regex"),
    pytest.param(
        {"target_modules": r".*\.self_attn\.[qv]_proj"},
        paths(["self_attn.q_proj", "self_attn.v_proj"]),
        id="regex-alternatives",
    ),
    pytest.param(
        {"target_modules": r"model\.layers\.1\.mlp\.\w+_proj"},
        paths(["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"], layers=(1,)),
        id="regex-one-layer",
    ),
    pytest.param(
        {"target_modules": ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]},
        paths(["mlp.down_proj"]),
        id="list-full-names",
    ),
    pytest.param(
        {"target_modules": ["q_proj", "down_proj"], "exclude_modules": ["q_proj"]},
        paths(["mlp.down_proj"]),
        id="exclude-list",
    ),
    pytest.param(
        {"target_modules": "all-linear", "exclude_modules": r".*\.mlp\..*"},
        paths(LLAMA_LAYER[:4]),
        id="exclude-regex",
    ),
    pytest.param(
        {"target_modules": ["down_proj"], "layers_to_transform": 1},
        paths(["mlp.down_proj"], layers=(1,)),
        id="layers-int",
    ),
    pytest.param(
        {"target_modules": ["down_proj", "up_proj"], "layers_to_transform": [0], "layers_pattern": "layers"},
        paths(["mlp.up_proj", "mlp.down_proj"], layers=(0,)),
        id="layers-list-and-pattern",
    ),
]


@pytest.mark.parametrize(("options", "expected"), TARGET_CASES)
def test_target_options_select_the_shine_layers(options, expected, tokenizer):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = make_shine(vocab_size=len(tokenizer), **options)
    assert not [w for w in caught if "no modules were excluded" in str(w.message)]  # PEFT sees the exclusions too
    assert shine_module_names(model) == expected
    absorbed = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    assert set(absorbed.module_paths.values()) == expected  # the generated LoRA covers exactly those modules


@pytest.mark.parametrize("architecture", ARCHS)
def test_regex_target_modules_on_every_architecture(architecture, tokenizer):
    model, _ = make_shine(architecture, len(tokenizer), target_modules=r".*\.mlp\.down_proj")
    assert shine_module_names(model) == paths(["mlp.down_proj"])


def test_layers_to_transform_survives_save_and_load(tokenizer, tmp_path):
    vocab = len(tokenizer)
    model, _ = make_shine(vocab_size=vocab, target_modules=["down_proj"], layers_to_transform=[1])
    original = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    assert set(original.module_paths.values()) == paths(["mlp.down_proj"], layers=(1,))
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(build_model("llama", vocab), tmp_path)
    assert shine_module_names(loaded) == paths(["mlp.down_proj"], layers=(1,))
    assert_same_factors(loaded.absorb_context(CONTEXTS[0], tokenizer=tokenizer), original)


def test_layers_to_transform_reads_the_memory_of_the_same_layers(tokenizer):
    """Proposed mapping: the hypernetwork's layer axis is the targeted layers, and the LoRA of decoder layer i is
    written from the memory states at layer i's output, as without layers_to_transform. With layers_to_transform=[0]
    the encode pass is read at layer 0, so a change to layer 1 must not change the generated LoRA."""
    model, _ = make_shine(vocab_size=len(tokenizer), target_modules=["down_proj"], layers_to_transform=[0])
    first = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    assert set(first.module_paths.values()) == {"model.layers.0.mlp.down_proj"}
    with torch.no_grad():
        model.base_model.model.model.layers[1].self_attn.o_proj.weight.mul_(3.0)
    assert_same_factors(model.absorb_context(CONTEXTS[0], tokenizer=tokenizer), first)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"target_modules": r".*\.down_proj", "layers_to_transform": [0]}, id="regex-with-layers"),
        pytest.param({"target_modules": ["down_proj"], "layers_pattern": "layers"}, id="pattern-without-layers"),
    ],
)
def test_target_option_combinations_lora_refuses_are_refused(options):
    with pytest.raises(ValueError, match="layers_"):
        ShineConfig(**SMALL_SHINE, **options)


# ---------------------------------------------------------------------------------------------------------------------
# structure.resolve_targets: the selection the tuner will call, checked against LoRA's own matching

STRUCTURE_CASES = [
    {"target_modules": ["down_proj"]},
    {"target_modules": ["mlp.down_proj", "q_proj"]},
    {"target_modules": r".*\.mlp\.down_proj"},
    {"target_modules": r".*\.self_attn\.[qkv]_proj"},
    {"target_modules": r"model\.layers\.1\.mlp\.\w+_proj"},
    {"target_modules": ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]},
    {"target_modules": "all-linear"},
    {"target_modules": "ALL-LINEAR"},
    {"target_modules": ["q_proj", "down_proj"], "exclude_modules": ["q_proj"]},
    {"target_modules": "all-linear", "exclude_modules": r".*\.mlp\..*"},
    {"target_modules": ["down_proj"], "exclude_modules": r"model\.layers\.0\..*"},
    {"target_modules": ["down_proj"], "layers_to_transform": 1},
    {"target_modules": ["down_proj", "up_proj"], "layers_to_transform": [0], "layers_pattern": "layers"},
    {"target_modules": ["q_proj"], "layers_to_transform": [1, 0]},
]


def lora_targets(architecture: str, options: dict) -> set[str]:
    model = get_peft_model(build_model(architecture), LoraConfig(**options))
    return {name for name, module in model.base_model.model.named_modules() if isinstance(module, LoraLayer)}


@pytest.mark.parametrize("options", STRUCTURE_CASES, ids=str)
def test_resolve_targets_selects_what_lora_selects(options):
    structure = resolve_targets(build_model("llama"), **options)
    assert set(structure.target_paths()) == lora_targets("llama", options)
    layers = {int(path.split(".")[2]) for path in structure.target_paths()}
    assert structure.targeted_layers == tuple(sorted(layers))
    assert structure.restricts_layers == (layers != {0, 1})


@pytest.mark.parametrize("architecture", ARCHS)
@pytest.mark.parametrize("target_modules", ["all-linear", r".*\.down_proj", ["o_proj", "down_proj"]], ids=str)
def test_resolve_targets_selects_what_lora_selects_on_every_architecture(architecture, target_modules):
    structure = resolve_targets(build_model(architecture), target_modules)
    assert set(structure.target_paths()) == lora_targets(architecture, {"target_modules": target_modules})


def discover_structure(  # the selection before issue 12, as the oracle of saved adapters
    model: nn.Module, target_modules: str | list[str] | None
) -> DecoderStructure:
    """Find the decoder layers and the targeted linear projections (identical in every layer).

    Legacy matching, kept until the tuner calls `resolve_targets`: a str other than "all-linear" is one module name
    (not a regular expression), names are matched relative to a decoder layer, and every layer is targeted."""
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


@pytest.mark.parametrize("architecture", ARCHS)
@pytest.mark.parametrize("target_modules", [None, "all-linear", ["q_proj", "v_proj"], ["mlp.down_proj"]], ids=str)
def test_resolve_targets_keeps_the_structure_of_existing_adapters(architecture, target_modules):
    """For the lists and None that adapters are saved with, the new selection gives the legacy structure (same modules,
    same slicing order, every layer), so wiring it in loads every saved adapter unchanged."""
    base = build_model(architecture)
    try:
        legacy = discover_structure(base, target_modules)
    except ValueError:  # e.g. q_proj on Phi-3, whose attention has one fused qkv_proj
        with pytest.raises(ValueError):
            resolve_targets(base, target_modules)
        return
    new = resolve_targets(base, target_modules)
    assert (new.layers_path, new.layers) == (legacy.layers_path, legacy.layers)
    assert list(new.module_shapes.items()) == list(legacy.module_shapes.items())
    assert new.layer_indices is None and not new.restricts_layers


def test_resolve_targets_ignores_the_internals_of_injected_layers(tokenizer):
    before = resolve_targets(build_model("llama", len(tokenizer)), "all-linear")
    model, _ = make_shine(vocab_size=len(tokenizer))
    after = resolve_targets(model.base_model.model, "all-linear")
    assert list(after.module_shapes.items()) == list(before.module_shapes.items())
    assert after.target_paths() == before.target_paths()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"target_modules": ["lm_head"]}, "outside the decoder layers"),
        ({"target_modules": ["mlp"]}, "not nn.Linear"),
        ({"target_modules": r".*\.mlp\..*"}, r"act_fn .*not nn.Linear"),
        ({"target_modules": ["nowhere"]}, "selects no linear module"),
        ({"target_modules": ["down_proj"], "exclude_modules": ["down_proj"]}, "exclude_modules"),
        ({"target_modules": ["down_proj", "up_proj"], "exclude_modules": ["model.layers.0.mlp.up_proj"]}, "same"),
        ({"target_modules": ["down_proj"], "layers_to_transform": [2]}, "not decoder-layer indices"),
        ({"target_modules": r".*\.down_proj", "layers_to_transform": 0}, "cannot be used"),
        ({"target_modules": ["down_proj"], "layers_pattern": "layers"}, "must also be specified"),
        ({"target_modules": ["down_proj"], "layers_to_transform": 0, "layers_pattern": "blocks"}, "layers_pattern"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_resolve_targets_explains_what_shine_cannot_adapt(options, message):
    with pytest.raises(ValueError, match=message):
        resolve_targets(build_model("llama"), **options)


def test_resolve_targets_warns_when_exclude_modules_excludes_nothing():
    base = build_model("llama")
    with pytest.warns(UserWarning, match="no modules were excluded"):
        resolve_targets(base, ["down_proj"], exclude_modules=["nothing_here"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_targets(base, ["down_proj"], exclude_modules=["k_proj"])  # excluded counts even when not targeted


# ---------------------------------------------------------------------------------------------------------------------
# Model cards: the hypernetwork and an exported LoRA


def assert_shine_card(card: ModelCard, base_model: str, tags: set[str]) -> None:
    assert card.data.library_name == "peft"
    assert card.data.base_model == base_model
    assert tags <= set(card.data.tags or []), card.data.tags
    assert "SHINE" in card.text and re.search(r"peft[_-]shine", card.text), "no line on how the adapter was made"


def test_saved_hypernetwork_has_a_shine_model_card(saved_base, tmp_path):
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(**SMALL_SHINE))
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert_shine_card(card, str(saved_base), {"shine", "peft", "hypernetwork"})
    assert (
        "Model Card for Model ID" not in card.text and "[More Information Needed]" not in card.text
    )  # PEFT's template
    assert card.text.index("import peft_shine") < card.text.index("PeftModel.from_pretrained")  # else KeyError: 'SHINE'
    assert f'from_pretrained("{saved_base}")' in card.text
    model.save_pretrained(tmp_path)  # saving again keeps one card, one SHINE part
    assert ModelCard.load(tmp_path / "README.md").text.count("import peft_shine") == 1


def test_a_card_the_user_wrote_keeps_its_text_and_gains_the_shine_section(saved_base, tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# My adapter\n\nNotes of mine.\n")
    get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(**SMALL_SHINE)).save_pretrained(
        tmp_path
    )
    card = ModelCard.load(tmp_path / "README.md")
    assert "Notes of mine." in card.text and "## SHINE hypernetwork" in card.text and card.data.license == "mit"
    assert card.text.index("import peft_shine") < card.text.index("PeftModel.from_pretrained")


@issue(
    "push_to_hub (transformers' PushToHubMixin, inherited by PeftModel) writes its own default card (library_name "
    "transformers) over the README.md that save_pretrained wrote"
)
def test_pushed_hypernetwork_keeps_its_shine_model_card(saved_base, tmp_path, monkeypatch):
    import transformers.utils.hub as hub
    from huggingface_hub.errors import EntryNotFoundError

    uploaded: dict[str, bytes] = {}

    class FakeApi:  # no network: record what would be committed
        def create_repo(self, repo_id, **kwargs):
            return type("Repo", (), {"repo_id": repo_id})()

        def create_commit(self, repo_id, operations, **kwargs):
            for operation in operations:
                with open(operation.path_or_fileobj, "rb") as f:
                    uploaded[operation.path_in_repo] = f.read()
            return "commit-url"

    load_card = ModelCard.load.__func__

    def new_repo_has_no_card(cls, repo_id_or_path, *args, **kwargs):  # local files still load
        if Path(repo_id_or_path).exists():
            return load_card(cls, repo_id_or_path, *args, **kwargs)
        raise EntryNotFoundError(f"{repo_id_or_path} has no README.md yet")

    monkeypatch.setattr(hub, "hf_api", lambda: FakeApi())
    monkeypatch.setattr(hub.ModelCard, "load", classmethod(new_repo_has_no_card))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(**SMALL_SHINE))
    model.push_to_hub("me/shine-tiny")
    (tmp_path / "README.md").write_bytes(uploaded["README.md"])
    monkeypatch.undo()
    assert_shine_card(ModelCard.load(tmp_path / "README.md"), str(saved_base), {"shine", "peft", "hypernetwork"})


def test_exported_lora_has_a_shine_model_card(saved_base, tokenizer, tmp_path):
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(**SMALL_SHINE))
    absorbed = model.absorb_context(CONTEXTS[0], tokenizer=tokenizer)
    absorbed.save_pretrained(tmp_path / "lora")
    assert_shine_card(ModelCard.load(tmp_path / "lora" / "README.md"), str(saved_base), {"shine", "peft", "lora"})


def test_pushed_lora_has_a_shine_model_card(saved_base, tokenizer, tmp_path, monkeypatch):
    import shutil

    import huggingface_hub

    class FakeApi:  # no network: keep a copy of the uploaded folder
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kwargs):
            return repo_id

        def upload_folder(self, repo_id, folder_path, **kwargs):
            shutil.copytree(folder_path, tmp_path / "pushed")
            return "commit-url"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(saved_base), ShineConfig(**SMALL_SHINE))
    model.absorb_context(CONTEXTS[0], tokenizer=tokenizer).push_to_hub("me/lora-tiny")
    assert_shine_card(ModelCard.load(tmp_path / "pushed" / "README.md"), str(saved_base), {"shine", "peft", "lora"})


def test_decoder_layers_come_from_get_decoder_before_any_heuristic():
    """A module list of the same length registered before the decoder layers must not be taken for them."""
    from collections import OrderedDict

    base = build_model("llama")
    decoy = nn.ModuleList([nn.Linear(2, 2) for _ in base.model.layers])
    base.model._modules = OrderedDict([("decoy", decoy), *base.model._modules.items()])
    assert next(n for n, m in base.named_modules() if isinstance(m, nn.ModuleList)) == "model.decoy"
    assert find_decoder_layers(base) == ("model.layers", base.model.layers)
