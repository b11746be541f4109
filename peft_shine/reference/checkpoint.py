"""Reading a reference-format SHINE checkpoint (see the package docstring for its files) with
`torch.load(weights_only=True)` only, and checking the layout of its meta-LoRA."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILES = ("mem_tokens.pt", "metanetwork.pth", "metalora.pth")
IFT_FILE = "ift_additional_metalora.pth"
REFERENCE_MODULES = {"attention": ("q", "k", "v", "o"), "mlp": ("gate", "up", "down")}
"""The reference's meta-LoRA groups and modules, in its slicing order."""
LAYER_MODULES = tuple(
    f"{'self_attn' if group == 'attention' else 'mlp'}.{name}_proj"
    for group, names in REFERENCE_MODULES.items()
    for name in names
)
"""The same modules as named inside a transformers Qwen3 (Llama, Mistral, ...) decoder layer, in the same order."""
BLOCK_KEYS = {  # reference M2P block (nn.TransformerEncoderLayer) -> ours (hypernetwork.M2PBlock)
    "self_attn.in_proj_weight": "attn.qkv.weight",
    "self_attn.in_proj_bias": "attn.qkv.bias",
    "self_attn.out_proj.weight": "attn.proj.weight",
    "self_attn.out_proj.bias": "attn.proj.bias",
    "linear1.weight": "mlp.0.weight",
    "linear1.bias": "mlp.0.bias",
    "linear2.weight": "mlp.2.weight",
    "linear2.bias": "mlp.2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}


def load_tensors(path: str | os.PathLike) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU; ValueError (nothing unpickled) when the file needs more."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(
            f"{path} is not a plain tensor checkpoint: unpickling it would need more than tensors and containers "
            f"({first_line}). peft-shine only reads reference checkpoints with torch.load(weights_only=True) and "
            "refuses anything that could run code; obtain the file from its original source again."
        ) from None


@dataclass
class ReferenceCheckpoint:
    """A reference-format SHINE checkpoint in memory (see the module docstring for the layout).

    Shapes: L decoder layers, M memory slots, H hidden size, N M2P blocks, F the M2P FFN width."""

    folder: Path
    mem_tokens: torch.Tensor  # (M, H)
    metanetwork: dict[str, torch.Tensor]
    metalora: dict[int, dict[str, dict[str, dict[str, torch.Tensor | None]]]]
    trainer_state: dict | None = None
    has_ift_metalora: bool = False

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> ReferenceCheckpoint:
        """Read a reference checkpoint folder; `ift_additional_metalora.pth`, when present, is concatenated to the
        meta-LoRA along the rank (as the reference's evaluation does with `merge_loradicts`)."""
        folder = Path(folder)
        missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a reference SHINE checkpoint: {', '.join(missing)} missing (it needs "
                f"{', '.join(CHECKPOINT_FILES)}, as MuLabPKU/SHINE's save_checkpoint writes them)."
            )
        mem_tokens, metanetwork, metalora = (load_tensors(folder / name) for name in CHECKPOINT_FILES)
        if not isinstance(mem_tokens, torch.Tensor) or mem_tokens.dim() != 2:
            raise ValueError(f"{folder / 'mem_tokens.pt'} must hold one (M, H) tensor, got {describe(mem_tokens)}.")
        if not isinstance(metanetwork, dict) or "layer_pe" not in metanetwork:
            raise ValueError(f"{folder / 'metanetwork.pth'} is not a transformer M2P state dict (no layer_pe).")
        metalora = check_metalora(metalora, folder / "metalora.pth")
        ift = folder / IFT_FILE
        if ift.is_file():
            metalora = concat_metalora(metalora, check_metalora(load_tensors(ift), ift))
        state_path = folder / "trainer_state.json"
        trainer_state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else None
        return cls(folder, mem_tokens.detach(), metanetwork, metalora, trainer_state, ift.is_file())

    @property
    def num_slots(self) -> int:
        return self.mem_tokens.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.mem_tokens.shape[1]

    @property
    def num_layers(self) -> int:
        return self.metanetwork["layer_pe"].shape[0]

    @property
    def num_blocks(self) -> int:
        return len({key.split(".")[1] for key in self.metanetwork if key.startswith("transformer_layers.")})

    @property
    def meta_lora_rank(self) -> int:
        return self.metalora[0]["attention"]["q"]["A"].shape[-1]

    @property
    def m2p_intermediate_size(self) -> int:
        return self.metanetwork["transformer_layers.0.linear1.weight"].shape[0]


def describe(value: Any) -> str:
    """A short description of a loaded value for error messages."""
    return f"tensor {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def check_metalora(metalora: Any, path: Path) -> dict:
    """Raise ValueError unless `metalora` has the reference layout with 2-D factors per module and no bias (C)."""
    if not isinstance(metalora, dict) or sorted(metalora) != list(range(len(metalora))) or not metalora:
        raise ValueError(f"{path} must map decoder layers 0..L-1 to meta-LoRA dicts, got keys {list(metalora)[:5]}.")
    for layer, groups in metalora.items():
        for group, names in REFERENCE_MODULES.items():
            for name in names:
                factors = groups.get(group, {}).get(name)
                where = f"{path}: layer {layer} {group}.{name}"
                if not isinstance(factors, dict) or not all(isinstance(factors.get(k), torch.Tensor) for k in "AB"):
                    raise ValueError(f"{where} has no A and B tensors; is this a reference meta-LoRA?")
                if factors.get("C") is not None:
                    raise ValueError(
                        f"{where} has a bias term C; peft-shine's meta-LoRA has none (the reference's "
                        "released checkpoints have none either)."
                    )
                if factors["A"].dim() != 3 or factors["A"].shape[0] != 1 or factors["B"].shape[0] != 1:
                    raise ValueError(
                        f"{where}: A must be (1, in, r) and B (1, r, out), got "
                        f"{tuple(factors['A'].shape)} and {tuple(factors['B'].shape)}."
                    )
    return metalora


def concat_metalora(first: dict, second: dict) -> dict:
    """Two meta-LoRAs of the same modules as one of rank r1 + r2: A (1, in, r1 + r2), B (1, r1 + r2, out)."""
    if sorted(first) != sorted(second):
        raise ValueError(f"{IFT_FILE} covers layers {sorted(second)}, metalora.pth {sorted(first)}: not one model.")
    return {
        layer: {
            group: {
                name: {
                    "A": torch.cat([first[layer][group][name]["A"], second[layer][group][name]["A"]], dim=2),
                    "B": torch.cat([first[layer][group][name]["B"], second[layer][group][name]["B"]], dim=1),
                }
                for name in names
            }
            for group, names in REFERENCE_MODULES.items()
        }
        for layer in first
    }
