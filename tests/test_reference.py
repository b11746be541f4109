"""Parity with the SHINE reference code (MuLabPKU/SHINE): its checkpoint of a tiny random Qwen3, converted with
`convert_reference`, reproduces the goldens the reference code itself recorded (tools/reference_goldens/make.py:
memory states, M2P output, every generated A and B, answer logits, greedy tokens), through the plain and the public
paths, after a save/load round trip and after a training-mode forward; plus the conversion's refusals and the
Qwen3-8B plan on the meta device."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

import peft_shine  # noqa: F401  (registers SHINE)
from peft_shine import ShineConfig
from peft_shine.hypernetwork import ShineHypernetwork, SlicingPlan
from peft_shine.layer import ShineState
from peft_shine.reference import (
    REFERENCE_MODULES,
    ReferenceCheckpoint,
    adapter_state_dict,
    convert_reference,
    plan_conversion,
)
from tests.helpers import FIXTURES, LLAMA_LAYER, build_tokenizer

FIXTURE = Path(os.environ.get("PEFT_SHINE_REFERENCE_FIXTURE", FIXTURES / "reference_qwen3_tiny"))
"""The goldens; point the variable at another folder written by tools/reference_goldens/make.py to check that one."""
META = json.loads((FIXTURE / "goldens.json").read_text())
OPTIONS = META["options"]
CASES = ("single", "batch", "fixed")
HAS_IFT = "ift_single" in META["cases"]  # made with --ift-meta-rank > 0
GROUP = {"attention": "self_attn", "mlp": "mlp"}


@pytest.fixture(scope="module")
def goldens() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "goldens.safetensors")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The fixture checkpoint converted for its base with the options the goldens were made with."""
    output = tmp_path_factory.mktemp("converted") / "adapter"
    convert_reference(
        FIXTURE / "checkpoint",
        str(FIXTURE / "base"),
        output,
        m2p_num_heads=OPTIONS["m2p_heads"],
        lora_scale=OPTIONS["scale"],
    )
    return output


def load_base() -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(FIXTURE / "base", dtype=torch.float32).eval()


def load_converted(adapter: Path, **kwargs) -> PeftModel:
    return PeftModel.from_pretrained(load_base(), adapter, **kwargs).eval()


def case_inputs(case: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context ids (B, T), their mask, and the question rows (B, Tq) of a golden case."""
    info = META["cases"][case]
    ids, mask = torch.tensor(info["context_ids"]), torch.tensor(info["context_attention_mask"])
    return ids, mask, torch.tensor(info["question_ids"]).expand(ids.shape[0], -1)


def golden_factors(goldens: dict, case: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The reference's generated loradict of a case under our module keys ("<layer>.self_attn.q_proj")."""
    return {
        f"{layer}.{GROUP[group]}.{name}_proj": (
            goldens[f"{case}.lora.{layer}.{group}.{name}.A"],
            goldens[f"{case}.lora.{layer}.{group}.{name}.B"],
        )
        for layer in range(OPTIONS["num_layers"])
        for group, names in REFERENCE_MODULES.items()
        for name in names
    }


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-5) -> None:
    """|actual - expected| <= tolerance * max |expected| everywhere."""
    assert actual.shape == expected.shape
    error = (actual - expected).abs().max() / expected.abs().max()
    assert error <= tolerance, f"relative error {error:.3g}"


def assert_reproduces(model: PeftModel, goldens: dict, case: str) -> None:
    """Memory states, M2P output, factors (1e-5 relative), answer logits (1e-5 absolute) and greedy tokens."""
    tuner = model.base_model
    ids, mask, question = case_inputs(case)
    with torch.no_grad():
        states = tuner.encode_memory_states(ids, mask)
        assert_relative(states, goldens[f"{case}.memory_states"])
        assert_relative(tuner.hypernetwork.m2p(states).flatten(1), goldens[f"{case}.m2p_output"])
        factors = tuner.generate_lora(ids, mask)
        expected = golden_factors(goldens, case)
        assert factors.keys() == expected.keys()
        for key, (a, b) in factors.items():
            assert_relative(a, expected[key][0])
            assert_relative(b, expected[key][1])
        with tuner.runtime.using(ShineState("answer", factors)):
            logits = model(input_ids=question).logits
            greedy = model.generate(
                input_ids=question,
                attention_mask=torch.ones_like(question),
                max_new_tokens=len(META["cases"][case]["greedy_tokens"][0]),
                do_sample=False,
                pad_token_id=0,
            )
    torch.testing.assert_close(logits, goldens[f"{case}.answer_logits"], rtol=0, atol=1e-5)
    assert greedy[:, question.shape[1] :].tolist() == META["cases"][case]["greedy_tokens"]


def test_goldens_are_non_trivial(goldens):
    """The fixture's generated LoRA moves the logits and greedy decoding is far from ties, so parity is meaningful."""
    for case in (*CASES, "ift_single") if HAS_IFT else CASES:
        moved = (goldens[f"{case}.answer_logits"] - goldens[f"{case}.base_logits"]).abs().max()
        assert moved > 0.5
        assert META["cases"][case]["smallest_greedy_margin"] > 1e-3
    for name in ("mem_tokens.pt", "metanetwork.pth", "metalora.pth"):
        assert (FIXTURE / "checkpoint" / name).is_file()


@pytest.mark.parametrize("case", CASES)
def test_converted_checkpoint_reproduces_the_reference(converted, goldens, case):
    assert_reproduces(load_converted(converted), goldens, case)


def test_conversion_infers_the_shapes_and_the_faithful_options(converted):
    config = ShineConfig.from_pretrained(converted)
    assert (config.lora_rank, config.meta_lora_rank, config.m2p_layers) == (
        OPTIONS["lora_rank"],
        OPTIONS["meta_rank"],
        OPTIONS["m2p_blocks"],
    )
    assert config.num_memory_tokens == META["num_mem_token"]
    assert config.standardize_memory_states is False and config.context_position_ids == "arange"
    assert [name for name, _, _ in config.target_module_shapes] == LLAMA_LAYER
    keys = load_file(converted / "adapter_model.safetensors").keys()
    assert not any("standardizer" in key for key in keys)
    card = (converted / "README.md").read_text()
    assert "checkpoint" in card and "arXiv:2602.06358" in card and "License" in card


def test_converted_keys_are_the_keys_peft_saves(converted):
    """The converter writes exactly the tensors `save_pretrained` writes for a SHINE model of the same config."""
    from peft import get_peft_model, get_peft_model_state_dict

    config = ShineConfig.from_pretrained(converted)
    fresh = ShineConfig.reference(
        lora_rank=config.lora_rank,
        meta_lora_rank=config.meta_lora_rank,
        m2p_layers=config.m2p_layers,
        m2p_num_heads=config.m2p_num_heads,
    )
    saved = get_peft_model_state_dict(get_peft_model(load_base(), fresh))
    converted_state = load_file(converted / "adapter_model.safetensors")
    assert {k: tuple(v.shape) for k, v in converted_state.items()} == {k: tuple(v.shape) for k, v in saved.items()}


def test_round_trip_and_load_shine_reproduce_the_reference(converted, goldens, tmp_path):
    model = load_converted(converted)
    model.save_pretrained(tmp_path / "again")
    assert_reproduces(load_converted(tmp_path / "again"), goldens, "batch")
    reloaded, tokenizer = peft_shine.load_shine(str(FIXTURE / "base"), str(tmp_path / "again"))
    assert tokenizer is None or hasattr(tokenizer, "encode")
    assert_reproduces(reloaded, goldens, "fixed")


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer whose text "t5 t17 t33" is exactly the ids [5, 17, 33] (to absorb the goldens' contexts as text)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(OPTIONS["vocab_size"])}
    words = Tokenizer(models.WordLevel(vocab, unk_token="t1"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=words, pad_token="t0")


def as_texts(ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    return [
        " ".join(f"t{i}" for i, m in zip(row.tolist(), keep.tolist(), strict=True) if m)
        for row, keep in zip(ids, mask, strict=True)
    ]


def test_absorb_ask_and_exported_lora_reproduce_the_reference(converted, goldens, tmp_path):
    """The public path: absorb the golden contexts as text (left-padded batch), answer, export each as a plain PEFT
    LoRA and load that with plain PEFT on a fresh base: the reference's answer logits every time."""
    model = load_converted(converted)
    ids, mask, question = case_inputs("batch")
    absorbed = model.absorb_context(as_texts(ids, mask), tokenizer=word_tokenizer())
    with torch.no_grad():
        logits = model(input_ids=question).logits
    torch.testing.assert_close(logits, goldens["batch.answer_logits"], rtol=0, atol=1e-5)
    for row in range(ids.shape[0]):
        absorbed[row].save_pretrained(tmp_path / f"lora{row}")
        plain = PeftModel.from_pretrained(load_base(), tmp_path / f"lora{row}").eval()
        assert plain.peft_config["default"].peft_type == "LORA"
        with torch.no_grad():
            row_logits = plain(input_ids=question[:1]).logits
        torch.testing.assert_close(row_logits[0], goldens["batch.answer_logits"][row], rtol=0, atol=1e-5)


def test_training_mode_forward_leaves_the_converted_model_faithful(converted, goldens):
    """With the standardiser off there are no statistics a training forward could move: after a training-mode
    forward and backward the model still reproduces the reference."""
    model = load_converted(converted, is_trainable=True).train()
    ids, mask, question = case_inputs("batch")
    before = {k: v.clone() for k, v in model.state_dict().items() if "shine" in k}
    output = model(input_ids=question, labels=question, context_input_ids=ids, context_attention_mask=mask)
    output.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "m2p" in n)
    after = {k: v for k, v in model.state_dict().items() if "shine" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert_reproduces(model.eval(), goldens, "single")


@pytest.mark.skipif(not HAS_IFT, reason="fixture made with --ift-meta-rank 0 (no ift_additional_metalora.pth)")
def test_ift_additional_metalora_is_concatenated_along_the_rank(goldens, tmp_path):
    """instruction tuning's second meta-LoRA joins the first along the rank, as the reference's evaluation merges it."""
    source = tmp_path / "ckpt"
    shutil.copytree(FIXTURE / "checkpoint", source)
    shutil.copy(FIXTURE / "checkpoint_ift" / "ift_additional_metalora.pth", source)
    config = convert_reference(
        source, str(FIXTURE / "base"), tmp_path / "out", m2p_num_heads=OPTIONS["m2p_heads"], lora_scale=OPTIONS["scale"]
    )
    assert config.meta_lora_rank == OPTIONS["meta_rank"] + OPTIONS["ift_meta_rank"]
    assert_reproduces(load_converted(tmp_path / "out"), goldens, "ift_single")


# --------------------------------------------------------------------------------------------------------------------
# Refusals


class Sentinel:
    """An object whose unpickling would create a file (proof that a refused pickle was never unpickled)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickle_that_needs_code_is_refused_and_never_unpickled(tmp_path):
    source = tmp_path / "ckpt"
    shutil.copytree(FIXTURE / "checkpoint", source)
    touched = tmp_path / "unpickled"
    torch.save({"layer": Sentinel(touched)}, source / "metalora.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_reference(source, str(FIXTURE / "base"), tmp_path / "out")
    assert not touched.exists() and not (tmp_path / "out").exists()


def base_config(**changes) -> Qwen3Config:
    config = json.loads((FIXTURE / "base" / "config.json").read_text())
    config.pop("layer_types", None)  # derived from num_hidden_layers
    return Qwen3Config(**{**config, **changes})


def edited_checkpoint(edit) -> ReferenceCheckpoint:
    checkpoint = ReferenceCheckpoint.from_folder(FIXTURE / "checkpoint")
    edit(checkpoint.metanetwork)
    return checkpoint


def indivisible_intermediate_size() -> int:
    """An MLP width for which M*H is not a multiple of this base's D (so no rank fits the checkpoint)."""
    config = json.loads((FIXTURE / "base" / "config.json").read_text())
    numbers = META["num_mem_token"] * config["hidden_size"]
    per_layer = numbers // OPTIONS["lora_rank"]
    return next(config["intermediate_size"] + d for d in range(1, 64) if numbers % (per_layer + 3 * d))


WIDTH, LAYERS, BLOCKS = OPTIONS["hidden_size"], OPTIONS["num_layers"], OPTIONS["m2p_blocks"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_size": 2 * WIDTH, "head_dim": 2 * WIDTH // OPTIONS["num_heads"]}, f"hidden size is {2 * WIDTH}"),
        ({"num_hidden_layers": LAYERS + 1}, f"the base has {LAYERS + 1} decoder layers"),
        ({"intermediate_size": indivisible_intermediate_size()}, "not a multiple of D"),
    ],
    ids=["hidden_size", "layers", "mlp_width"],
)
def test_a_wrong_base_is_refused_with_the_reason(changes, message):
    checkpoint = ReferenceCheckpoint.from_folder(FIXTURE / "checkpoint")
    with pytest.raises(ValueError, match=message):
        plan_conversion(checkpoint, base_config(**changes), m2p_num_heads=OPTIONS["m2p_heads"])


def test_a_base_without_the_reference_projections_is_refused():
    from transformers import GPT2Config

    checkpoint = ReferenceCheckpoint.from_folder(FIXTURE / "checkpoint")
    with pytest.raises(ValueError, match="projections the reference adapts"):
        plan_conversion(checkpoint, GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=303))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda net: net.update({"couple_layers.0.linear1.weight": torch.zeros(2, 2)}), "couple_layers"),
        (
            lambda net: [net.pop(k) for k in [k for k in net if k.startswith(f"transformer_layers.{BLOCKS - 1}.")]],
            f"{BLOCKS - 1} blocks",
        ),
    ],
    ids=["couple_layers", "odd_blocks"],
)
def test_unsupported_reference_variants_are_refused(edit, message):
    checkpoint = edited_checkpoint(edit)
    with pytest.raises(ValueError, match=message):
        plan_conversion(checkpoint, base_config(), m2p_num_heads=OPTIONS["m2p_heads"])


def test_a_folder_without_the_checkpoint_files_is_refused(tmp_path):
    (tmp_path / "metalora.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="mem_tokens.pt, metanetwork.pth missing"):
        ReferenceCheckpoint.from_folder(tmp_path)


def test_cli_converts_and_reports_errors(tmp_path, capsys):
    from peft_shine.cli import main

    base = str(FIXTURE / "base")
    main(
        [
            "convert-reference",
            str(FIXTURE / "checkpoint"),
            "--base",
            base,
            "--output",
            str(tmp_path / "out"),
            "--m2p-heads",
            str(OPTIONS["m2p_heads"]),
        ]
    )
    assert "memory slots" in capsys.readouterr().out
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    with pytest.raises(SystemExit, match="error: .*not a reference SHINE checkpoint"):
        main(["convert-reference", str(tmp_path), "--base", base, "--output", str(tmp_path / "x")])


# --------------------------------------------------------------------------------------------------------------------
# The paper's Qwen3-8B configuration, on the meta device


def test_qwen3_8b_plan_matches_the_reference_configuration():
    """configs/Qwen3-8B.yaml: r=8 on all seven projections of 36 layers, meta rank 128, 4 blocks of width H, FFN 2H.
    The reference-shaped checkpoint (meta tensors, no memory) converts to M = 148 and the parameter counts the
    reference's config implies."""
    qwen3_8b = Qwen3Config(
        vocab_size=151936,
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
    )
    hidden, layers, inter = 4096, 36, 12288
    kv = 8 * 128
    shapes = {
        "q": (hidden, hidden),
        "k": (hidden, kv),
        "v": (hidden, kv),
        "o": (hidden, hidden),
        "gate": (hidden, inter),
        "up": (hidden, inter),
        "down": (inter, hidden),
    }
    per_layer = sum(i + o for i, o in shapes.values())  # D
    rank, meta_rank, blocks, ffn = 8, 128, 4, 2 * hidden
    slots = rank * per_layer // hidden
    meta = torch.device("meta")

    def empty(*shape):
        return torch.empty(*shape, device=meta)

    network = {"layer_pe": empty(layers, hidden), "token_pe": empty(slots, hidden)}
    block = {
        "self_attn.in_proj_weight": (3 * hidden, hidden),
        "self_attn.in_proj_bias": (3 * hidden,),
        "self_attn.out_proj.weight": (hidden, hidden),
        "self_attn.out_proj.bias": (hidden,),
        "linear1.weight": (ffn, hidden),
        "linear1.bias": (ffn,),
        "linear2.weight": (hidden, ffn),
        "linear2.bias": (hidden,),
        "norm1.weight": (hidden,),
        "norm1.bias": (hidden,),
        "norm2.weight": (hidden,),
        "norm2.bias": (hidden,),
    }
    for i in range(blocks):
        network.update({f"transformer_layers.{i}.{k}": empty(*shape) for k, shape in block.items()})
    metalora = {
        layer: {
            group: {
                name: {"A": empty(1, shapes[name][0], meta_rank), "B": empty(1, meta_rank, shapes[name][1]), "C": None}
                for name in names
            }
            for group, names in REFERENCE_MODULES.items()
        }
        for layer in range(layers)
    }
    checkpoint = ReferenceCheckpoint(Path("Yewei-Liu/SHINE-ift_mqa_1qa"), empty(slots, hidden), network, metalora)

    config, structure = plan_conversion(checkpoint, qwen3_8b)
    assert config.num_memory_tokens == 148 == math.ceil(rank * per_layer / hidden)
    assert (config.lora_rank, config.meta_lora_rank, config.m2p_layers) == (rank, meta_rank, blocks)
    assert (config.m2p_hidden_size, config.m2p_num_heads, config.m2p_intermediate_size) == (hidden, 32, ffn)
    state = adapter_state_dict(checkpoint, structure)
    m2p = sum(v.numel() for k, v in state.items() if "shine_hypernetwork" in k and "memory_embeddings" not in k)
    meta_lora = sum(v.numel() for k, v in state.items() if "shine_meta_" in k)
    expected_m2p = sum(math.prod(shape) for shape in block.values()) * blocks + (layers + slots) * hidden
    assert m2p == expected_m2p and abs(m2p / 537e6 - 1) < 0.01  # "about 537 M"
    assert meta_lora == meta_rank * per_layer * layers and abs(meta_lora / 349e6 - 1) < 0.01  # "about 349 M"
    with meta:  # the hypernetwork this config builds has exactly the converted tensors
        plan = SlicingPlan(tuple(map(tuple, config.target_module_shapes)), rank, layers)
        ours = ShineHypernetwork(plan, hidden, slots, hidden, 32, ffn, blocks, 1e-3, 0.01, 0.02, standardize=False)
    assert sum(p.numel() for p in ours.parameters()) == m2p + slots * hidden


# --------------------------------------------------------------------------------------------------------------------
# The reference's question prompt, and continuing training from a converted checkpoint

QWEN3_GENERATION_TEMPLATE = (  # the part of Qwen3's chat template that renders user turns and the generation prompt
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}{%- endif %}"
)


@pytest.fixture(scope="module")
def qwen3_tokenizer() -> PreTrainedTokenizerFast:
    if OPTIONS["vocab_size"] < 300:
        pytest.skip("the byte-level test tokenizer needs a base vocabulary of at least 300 (make.py --vocab-size)")
    tokenizer = build_tokenizer(vocab_size=OPTIONS["vocab_size"])
    tokenizer.chat_template = QWEN3_GENERATION_TEMPLATE
    return tokenizer


def test_ask_renders_the_prompt_the_reference_evaluates_with(converted, qwen3_tokenizer):
    model = load_converted(converted)
    seen = []
    hook = model.get_input_embeddings().register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.absorb_context("A short context to absorb.", tokenizer=qwen3_tokenizer)
    seen.clear()
    model.ask("Who signed it?", max_new_tokens=1)
    hook.remove()
    prompt = qwen3_tokenizer.decode(seen[0][0])
    assert prompt == "<|im_start|>user\nWho signed it?<|im_end|>\n<|im_start|>assistant\n"


def test_training_continues_from_a_converted_checkpoint(converted, qwen3_tokenizer, tmp_path, monkeypatch):
    """examples/instruct.py (stock Trainer) continues from the converted adapter: finite falling loss, and the
    adapter it saves keeps the reference-faithful options."""
    from tests.helpers import QA, ROOT, write_jsonl

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import instruct

    base = tmp_path / "base"
    shutil.copytree(FIXTURE / "base", base)
    qwen3_tokenizer.save_pretrained(base)
    output = tmp_path / "run"
    instruct.main(
        [
            "--model_name_or_path",
            str(base),
            "--adapter_name_or_path",
            str(converted),
            "--train_file",
            str(write_jsonl(tmp_path / "qa.jsonl", QA[:2])),
            "--output_dir",
            str(output),
            "--max_steps",
            "8",
            "--per_device_train_batch_size",
            "2",
            "--learning_rate",
            "3e-3",
            "--logging_steps",
            "1",
            "--use_cpu",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--seed",
            "0",
            "--dataloader_num_workers",
            "0",
        ]
    )
    losses = [
        entry["loss"]
        for entry in json.loads((output / "trainer_state.json").read_text())["log_history"]
        if "loss" in entry
    ]
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    config = ShineConfig.from_pretrained(output)
    assert config.standardize_memory_states is False and config.context_position_ids == "arange"
    assert not any("standardizer" in key for key in load_file(output / "adapter_model.safetensors"))


def test_a_hub_source_is_downloaded_and_its_checkpoint_folder_found(tmp_path, monkeypatch, qwen3_tokenizer):
    """A Hub id goes through huggingface_hub.snapshot_download (revision passed on, only checkpoint-like files);
    the one folder that holds the checkpoint is used, and a base with a tokenizer puts it in the adapter folder."""
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    shutil.copytree(FIXTURE / "checkpoint", snapshot / "ift_mqa_1qa")
    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    base = tmp_path / "base"
    shutil.copytree(FIXTURE / "base", base)
    qwen3_tokenizer.save_pretrained(base)
    convert_reference("Yewei-Liu/SHINE-ift_mqa_1qa", str(base), tmp_path / "out", revision="v1", m2p_num_heads=4)
    assert calls == [("Yewei-Liu/SHINE-ift_mqa_1qa", "v1", ["*.pt", "*.pth", "*.json", "*.md"])]
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert "Yewei-Liu/SHINE-ift_mqa_1qa" in (tmp_path / "out" / "README.md").read_text()
    shutil.copytree(FIXTURE / "checkpoint", snapshot / "another")
    with pytest.raises(FileNotFoundError, match="should hold one reference checkpoint"):
        convert_reference("Yewei-Liu/SHINE-ift_mqa_1qa", str(base), tmp_path / "again")
