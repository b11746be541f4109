"""Saved SHINE adapters keep loading, and keep writing the same LoRAs, across refactors.

- `tests/fixtures/saved_adapter_v0/`: a tiny SHINE adapter (with its tokenizer) saved by peft_shine 0.1.0 for the tiny
  Llama that `pinned_tiny_base()` builds, and the LoRA it wrote for `TINY_TEXT` (`expected_factors.safetensors`, keyed
  by module path). Loading it with `PeftModel.from_pretrained` must reproduce that LoRA exactly (bit for bit; the
  same with 1, 2 or 4 threads). Never regenerate v0: a new format gets a new folder
  (`python -m tests.test_saved_adapters --write-fixture tests/fixtures/saved_adapter_v1`).
- The shipped default adapter (`peft_shine/assets/default`, loaded by `peft_shine.defaults.load_default`) must write
  the LoRA pinned in `DEFAULT_PINNED` for `DEFAULT_TEXT`: sums over all modules to 1e-5 (relative), a few entries to
  1e-4 (float32 noise of the 30-layer encode pass moves single entries by up to ~1e-5 between thread counts). If the
  asset is replaced on purpose, print the new pins with `python -m tests.test_saved_adapters --print-default`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

import peft_shine  # noqa: F401  (registers SHINE with PEFT)
from peft_shine import defaults
from tests.helpers import build_model, default_gguf_or_none

FIXTURE = Path(__file__).parent / "fixtures" / "saved_adapter_v0"
TINY_TEXT = "The lighthouse on Marrow Point was built in 1871 by the engineer Clara Vennet."
TINY_SHINE = dict(
    lora_rank=2,
    meta_lora_rank=4,
    m2p_layers=2,
    m2p_hidden_size=32,
    m2p_num_heads=2,
    m2p_intermediate_size=64,
    target_modules=["down_proj"],
)
FIXTURE_SHA256 = {
    "adapter_config.json": "8c977a8b21284a0098b040a50e853872c9abe090c4fa98680aeb43be4a9d609a",
    "adapter_model.safetensors": "672d687f8d3aa9cbac59c6ced5762e67cfab6c750d71359dac1bcf104181f1da",
    "expected_factors.safetensors": "86722ae777448c670f1cc082a0e55134a605954787c5aaa1adab76fefcac24e6",
    "tokenizer.json": "36e5d7dd959e1a2a619e14803b23a2ed7ef4f23a5f8b03cad23f2b07e8613446",
}
TINY_TEXT_IDS = [283, 336, 302, 87, 85, 71, 382, 324, 378, 363, 356, 330, 308, 286, 86, 296, 274, 26, 25, 19, 329, 261]
TINY_TEXT_IDS += [223, 271, 73, 264, 71, 263, 223, 37, 78, 265, 67, 223, 56, 271, 80, 314, 16]
TINY_BASE_FINGERPRINT = (335.3498813123306, 4825.643532992344)  # (sum, sum of |w|) of the base weights, float64

DEFAULT_TEXT = "The Harbour Board of Port Elling is chaired by Mirela Dovan, who was elected in March 2021."
DEFAULT_SHA256 = {
    "adapter_config.json": "e889d81030478ec5d9e6c430fb8e672e3dd7bcb1b125abe6d307484a2ba4ee3e",
    "adapter_model.safetensors": "4c460db19f623150a8deaf9ef4cdec2b1e8588d016fcda5a6d995c98222afae2",
}
DEFAULT_PINNED = {
    "entries": {
        "model.layers.0.mlp.down_proj.A": [
            [-0.010443865321576595, -0.002937101060524583],
            [-0.003073930274695158, -0.012350870296359062],
        ],
        "model.layers.0.mlp.down_proj.B": [
            [-0.011591795831918716, -0.10538771003484726],
            [-0.013739338144659996, -0.10765140503644943],
        ],
        "model.layers.29.mlp.down_proj.A": [
            [-0.0030935420654714108, 0.06275955587625504],
            [-0.05650633946061134, -0.07742384821176529],
        ],
        "model.layers.29.mlp.down_proj.B": [
            [-0.040362533181905746, -0.06279413402080536],
            [-0.038915812969207764, -0.0631520003080368],
        ],
    },
    "sum_A": 0.28811036212385943,
    "abs_sum_A": 4701.907339743997,
    "square_sum_A": 227.79363229210918,
    "sum_B": -12.890306624171956,
    "abs_sum_B": 1863.2662198792214,
    "square_sum_B": 84.65824723763374,
}  # --print-default with OMP_NUM_THREADS=1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_tiny_base():
    """The tiny Llama of `tests.helpers.build_model("llama", 400)` with every weight redrawn from one seeded generator
    in name order, so that the base does not depend on how transformers initialises a model."""
    base = build_model("llama", 400, seed=0)
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _, param in sorted(base.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.1 * noise if param.dim() == 1 else 0.05 * noise)
    return base


def base_fingerprint(base) -> tuple[float, float]:
    weights = [param.detach().double() for _, param in sorted(base.named_parameters())]
    return sum(w.sum().item() for w in weights), sum(w.abs().sum().item() for w in weights)


def factors_by_path(absorbed) -> dict[str, torch.Tensor]:
    """The LoRA of the first context as {"<module path>.A": (in, r), "<module path>.B": (r, out)}, independent of how
    the model keys its modules internally."""
    tensors = {}
    for key, (a, b) in absorbed.factors.items():
        path = absorbed.module_paths[key]
        tensors[f"{path}.A"] = a[0].detach().float().contiguous()
        tensors[f"{path}.B"] = b[0].detach().float().contiguous()
    return tensors


def summary(tensors: dict[str, torch.Tensor]) -> dict:
    """A few entries and the sums that pin a generated LoRA: first and last module's A[:2, :2] and B[:2, :2], and over
    all modules sum, sum |x| and sum x^2 of A and of B (float64)."""
    names = sorted(
        {name.rsplit(".", 1)[0] for name in tensors}, key=lambda p: [int(s) if s.isdigit() else s for s in p.split(".")]
    )
    pinned = {"entries": {}}
    for path in (names[0], names[-1]):
        for side in ("A", "B"):
            pinned["entries"][f"{path}.{side}"] = tensors[f"{path}.{side}"][:2, :2].tolist()
    for side in ("A", "B"):
        values = torch.cat([tensors[f"{path}.{side}"].double().flatten() for path in names])
        pinned[f"sum_{side}"] = values.sum().item()
        pinned[f"abs_sum_{side}"] = values.abs().sum().item()
        pinned[f"square_sum_{side}"] = values.square().sum().item()
    return pinned


# ---------------------------------------------------------------------------------------------------------------------
# The tiny adapter fixture


def test_tiny_adapter_fixture_is_the_v0_one():
    files = sorted(p.name for p in FIXTURE.iterdir())
    assert {"adapter_config.json", "adapter_model.safetensors", "expected_factors.safetensors"} <= set(files)
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 200 * 1024
    for name, digest in FIXTURE_SHA256.items():
        assert sha256(FIXTURE / name) == digest, f"{FIXTURE / name} changed: v0 is frozen, save a new version instead"


def test_tiny_saved_adapter_loads_and_writes_the_pinned_lora():
    base = pinned_tiny_base()
    assert base_fingerprint(base) == pytest.approx(TINY_BASE_FINGERPRINT, rel=1e-9), (
        "pinned_tiny_base() no longer builds the base the fixture was saved for (did LlamaConfig's defaults or "
        "build_model change?); this says nothing about SHINE yet"
    )
    tokenizer = AutoTokenizer.from_pretrained(FIXTURE)
    assert tokenizer(TINY_TEXT)["input_ids"] == TINY_TEXT_IDS, "the tokenizer saved with the fixture reads differently"
    model = PeftModel.from_pretrained(base, FIXTURE).eval()
    assert not any(p.requires_grad for p in model.parameters())
    generated = factors_by_path(model.absorb_context(TINY_TEXT, tokenizer=tokenizer))
    expected = load_file(FIXTURE / "expected_factors.safetensors")
    assert generated.keys() == expected.keys()
    for name, tensor in expected.items():
        difference = (generated[name] - tensor).abs().max().item()
        assert torch.equal(generated[name], tensor), (
            f"{name}: the loaded adapter writes another LoRA (max |diff| {difference:.3g})"
        )


# ---------------------------------------------------------------------------------------------------------------------
# The shipped default adapter

requires_default = pytest.mark.skipif(
    default_gguf_or_none() is None, reason=f"needs the default base's GGUF: {defaults.INSTALL_COMMAND}"
)


def assert_matches_pins(found: dict, pinned: dict, tolerance: float = 1e-5, entry_tolerance: float = 1e-4) -> None:
    for name, values in pinned["entries"].items():
        torch.testing.assert_close(
            torch.tensor(found["entries"][name], dtype=torch.float64),
            torch.tensor(values, dtype=torch.float64),
            rtol=entry_tolerance,
            atol=entry_tolerance * max(abs(v) for row in values for v in row),
            msg=lambda message, name=name: f"{name}: {message}",
        )
    for side in ("A", "B"):
        scale = pinned[f"abs_sum_{side}"]
        assert found[f"sum_{side}"] == pytest.approx(pinned[f"sum_{side}"], abs=tolerance * scale)
        assert found[f"abs_sum_{side}"] == pytest.approx(scale, rel=tolerance)
        assert found[f"square_sum_{side}"] == pytest.approx(pinned[f"square_sum_{side}"], rel=tolerance)


@requires_default
def test_shipped_default_adapter_loads_and_writes_the_pinned_lora():
    for name, digest in DEFAULT_SHA256.items():
        assert sha256(defaults.DEFAULT_ADAPTER_DIR / name) == digest, (
            f"the shipped {name} changed; if on purpose, update the pins (python -m tests.test_saved_adapters "
            "--print-default)"
        )
    model, tokenizer = defaults.load_default()
    assert model.peft_config["default"].peft_type == "SHINE"
    with torch.no_grad():
        absorbed = model.absorb_context(DEFAULT_TEXT, tokenizer=tokenizer)
    assert_matches_pins(summary(factors_by_path(absorbed)), DEFAULT_PINNED)


# ---------------------------------------------------------------------------------------------------------------------
# Writing fixtures and pins (run by hand, never by the test suite)


def write_fixture(folder: Path) -> None:
    """Save a tiny SHINE adapter, its tokenizer and the LoRA it writes for TINY_TEXT into `folder`."""
    from peft import get_peft_model

    from peft_shine import ShineConfig
    from tests.helpers import CONTEXTS, build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    model = get_peft_model(pinned_tiny_base(), ShineConfig(**TINY_SHINE))
    generator = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "shine_meta_B" in name:  # as after training: the meta-LoRA changes the encode pass
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
    model.eval()
    model.calibrate_memory_statistics(CONTEXTS, tokenizer=tokenizer)
    absorbed = model.absorb_context(TINY_TEXT, tokenizer=tokenizer)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_file(factors_by_path(absorbed), folder / "expected_factors.safetensors")
    print(f"TINY_TEXT_IDS = {tokenizer(TINY_TEXT)['input_ids']}")
    print(f"TINY_BASE_FINGERPRINT = {base_fingerprint(pinned_tiny_base())}")
    print(json.dumps({p.name: sha256(p) for p in sorted(folder.iterdir())}, indent=4))


def print_default_pins() -> None:
    model, tokenizer = defaults.load_default()
    with torch.no_grad():
        absorbed = model.absorb_context(DEFAULT_TEXT, tokenizer=tokenizer)
    print(json.dumps({name: sha256(defaults.DEFAULT_ADAPTER_DIR / name) for name in DEFAULT_SHA256}, indent=4))
    print(json.dumps(summary(factors_by_path(absorbed)), indent=4))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-fixture"]:
        write_fixture(Path(sys.argv[2]))
    elif sys.argv[1:] == ["--print-default"]:
        print_default_pins()
    else:
        sys.exit(__doc__)
