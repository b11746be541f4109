"""The SHINE paper's checkpoints as peft-shine adapters: read the reference code's format (MuLabPKU/SHINE,
`utils/mysaveload.py`), check it against a base model, and write a SHINE PEFT adapter folder.

A reference checkpoint is a folder with
    mem_tokens.pt                 the memory embeddings, an `nn.Parameter` (M, H)
    metanetwork.pth               the M2P state dict: layer_pe (L, H), token_pe (M, H), transformer_layers.{i}.*
                                  (`nn.TransformerEncoderLayer`, post-LN), optionally couple_layers.{i}.*
    metalora.pth                  {layer: {"attention": {"q", "k", "v", "o"}, "mlp": {"gate", "up", "down"}}}, each
                                  {"A": (1, in, r_meta), "B": (1, r_meta, out), "C": None}
    ift_additional_metalora.pth   optional: a second meta-LoRA of the same layout from instruction tuning, which the
                                  reference concatenates with the first along the rank
    trainer_state.json            optional: training progress (recorded in the model card)

Pickles are read with `torch.load(weights_only=True)` only: a file that needs anything beyond tensors and plain
containers is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from .building import record_or_check_base
from .cards import reference_card
from .config import REFERENCE_TARGET_MODULES, ShineConfig, default_num_heads
from .files import write_folder_atomically
from .structure import DecoderStructure, resolve_targets

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


# --------------------------------------------------------------------------------------------------------------------
# Conversion plan: the ShineConfig a checkpoint implies on a base, with every shape checked.


def base_structure(
    base: str | PretrainedConfig, revision: str | None = None
) -> tuple[torch.nn.Module, DecoderStructure]:
    """The base's skeleton (on the meta device: no weights are loaded) and the modules the reference targets."""
    config = base if isinstance(base, PretrainedConfig) else AutoConfig.from_pretrained(base, revision=revision)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    try:
        structure = resolve_targets(model, list(REFERENCE_TARGET_MODULES))
    except ValueError as error:
        raise ValueError(f"The base does not hold the projections the reference adapts: {error}") from None
    if tuple(structure.module_shapes) != LAYER_MODULES:
        raise ValueError(
            f"The reference slices its LoRA for {list(LAYER_MODULES)} in that order; this base's decoder layers hold "
            f"{list(structure.module_shapes)}. Convert for the Qwen3 base the checkpoint was trained on."
        )
    return model, structure


def plan_conversion(
    checkpoint: ReferenceCheckpoint,
    base: str | PretrainedConfig,
    *,
    m2p_num_heads: int | None = None,
    lora_scale: float = 1e-3,
    revision: str | None = None,
) -> tuple[ShineConfig, DecoderStructure]:
    """The `ShineConfig` that reproduces `checkpoint` on `base` (a path, Hub id or config), and the base's structure.

    The files determine L, H, M, the M2P block count and FFN width, the meta-LoRA rank, and r = M*H/D (D: the sum of
    in + out over the seven projections of one base layer). The heads (default H/128) and the scale (default 1e-3)
    are not stored by the reference and are options. Raises ValueError naming every mismatch with the base and every
    reference variant peft-shine does not reproduce."""
    model, structure = base_structure(base, revision)
    text_config = model.config.get_text_config()
    problems = unsupported_variants(checkpoint)
    hidden, layers = text_config.hidden_size, len(structure.layers)
    if checkpoint.hidden_size != hidden:
        problems.append(f"mem_tokens.pt has width {checkpoint.hidden_size}, the base's hidden size is {hidden}")
    if checkpoint.num_layers != layers:
        problems.append(f"layer_pe has {checkpoint.num_layers} layers, the base has {layers} decoder layers")
    if len(checkpoint.metalora) != layers:
        problems.append(f"metalora.pth covers {len(checkpoint.metalora)} layers, the base has {layers}")
    per_layer = sum(i + o for i, o in structure.module_shapes.values())
    rank, remainder = divmod(checkpoint.num_slots * checkpoint.hidden_size, per_layer)
    if remainder or rank < 1:
        problems.append(
            f"{checkpoint.num_slots} memory slots x width {checkpoint.hidden_size} is not a multiple of D = "
            f"{per_layer} (in + out of the seven projections of one base layer), so no LoRA rank r gives M = r*D/H"
        )
    problems += meta_lora_mismatches(checkpoint, structure)
    if problems:
        raise ValueError(
            f"The reference checkpoint in {checkpoint.folder} does not fit this base "
            f"({getattr(text_config, 'name_or_path', '') or text_config.model_type}):\n- " + "\n- ".join(problems)
        )
    heads = m2p_num_heads or default_num_heads(hidden)
    config = ShineConfig.reference(
        lora_rank=rank,
        meta_lora_rank=checkpoint.meta_lora_rank,
        m2p_layers=checkpoint.num_blocks,
        lora_scale=lora_scale,
        m2p_num_heads=heads,
        m2p_intermediate_size=checkpoint.m2p_intermediate_size,
        base_model_name_or_path=base if isinstance(base, str) else getattr(base, "name_or_path", None) or None,
        inference_mode=True,
    )
    record_or_check_base(model, config, structure)
    config.resolve_sizes()
    if config.num_memory_tokens != checkpoint.num_slots:  # r*D/H is exact above, so this only guards the formula
        raise ValueError(f"M = {config.num_memory_tokens} from the config, {checkpoint.num_slots} in the files.")
    return config, structure


def unsupported_variants(checkpoint: ReferenceCheckpoint) -> list[str]:
    """Reference M2P variants peft-shine does not reproduce, found in the state dict."""
    problems = []
    extra = {key for key in checkpoint.metanetwork if key.startswith("couple_layers.")}
    if extra:
        problems.append(f"the M2P has couple_layers ({len(extra)} tensors): that variant is not supported")
    blocks = checkpoint.num_blocks
    if blocks == 0 or blocks % 2:
        problems.append(f"the M2P has {blocks} blocks; peft-shine's alternate the layer and memory axes in pairs")
    known = {"layer_pe", "token_pe"} | {f"transformer_layers.{i}.{k}" for i in range(blocks) for k in BLOCK_KEYS}
    unknown = sorted(set(checkpoint.metanetwork) - known - extra)
    if unknown:
        problems.append(f"metanetwork.pth holds tensors peft-shine does not know: {unknown[:6]}")
    token_pe = checkpoint.metanetwork.get("token_pe")
    if token_pe is not None and tuple(token_pe.shape) != tuple(checkpoint.mem_tokens.shape):
        problems.append(
            f"token_pe is {tuple(token_pe.shape)}, mem_tokens {tuple(checkpoint.mem_tokens.shape)} "
            "(a mean-pooled M2P, mean_pool_size > 1, is not supported)"
        )
    return problems


def meta_lora_mismatches(checkpoint: ReferenceCheckpoint, structure: DecoderStructure) -> list[str]:
    """Meta-LoRA factors whose shapes differ from the base's projections (or whose ranks differ)."""
    problems, rank = [], checkpoint.meta_lora_rank
    names = list(structure.module_shapes)
    for layer, groups in checkpoint.metalora.items():
        ours = iter(names)
        for group, modules in REFERENCE_MODULES.items():
            for name in modules:
                fan_in, fan_out = structure.module_shapes[next(ours)]
                a, b = groups[group][name]["A"], groups[group][name]["B"]
                if tuple(a.shape) != (1, fan_in, rank) or tuple(b.shape) != (1, rank, fan_out):
                    problems.append(
                        f"meta-LoRA layer {layer} {group}.{name}: A {tuple(a.shape)}, B {tuple(b.shape)}; the base "
                        f"needs A (1, {fan_in}, {rank}) and B (1, {rank}, {fan_out})"
                    )
    return problems[:8]


# --------------------------------------------------------------------------------------------------------------------
# Writing the adapter.


def adapter_state_dict(checkpoint: ReferenceCheckpoint, structure: DecoderStructure) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under the names `PeftModel.save_pretrained` gives a SHINE adapter (float32)."""
    hyper = "base_model.shine_hypernetwork"
    net = checkpoint.metanetwork
    state = {
        f"{hyper}.memory_embeddings": checkpoint.mem_tokens,
        f"{hyper}.m2p.layer_position": net["layer_pe"].unsqueeze(1),  # (L, 1, H)
        f"{hyper}.m2p.memory_position": net["token_pe"].unsqueeze(0),  # (1, M, H)
    }
    for i in range(checkpoint.num_blocks):
        for theirs, ours in BLOCK_KEYS.items():
            state[f"{hyper}.m2p.blocks.{i}.{ours}"] = net[f"transformer_layers.{i}.{theirs}"]
    names = list(structure.module_shapes)
    for layer, groups in checkpoint.metalora.items():
        ours = iter(names)
        for group, modules in REFERENCE_MODULES.items():
            for name in modules:
                prefix = f"base_model.model.{structure.module_path(layer, next(ours))}"
                state[f"{prefix}.shine_meta_A.weight"] = groups[group][name]["A"][0].T  # (r_meta, in)
                state[f"{prefix}.shine_meta_B.weight"] = groups[group][name]["B"][0].T  # (out, r_meta)
    return {key: value.detach().float().contiguous() for key, value in state.items()}


def resolve_source(source: str | os.PathLike, revision: str | None = None) -> Path:
    """A local checkpoint folder, or a Hub repo downloaded with huggingface_hub (only its .pt/.pth/.json/.md files).
    Inside a download, the one folder that holds the checkpoint files is used."""
    if os.path.isdir(source):
        return Path(source)
    from huggingface_hub import snapshot_download

    root = Path(snapshot_download(str(source), revision=revision, allow_patterns=["*.pt", "*.pth", "*.json", "*.md"]))
    found = sorted({path.parent for path in root.rglob(CHECKPOINT_FILES[-1])})
    if len(found) != 1:
        where = ", ".join(str(path.relative_to(root)) for path in found) or "nowhere"
        raise FileNotFoundError(
            f"{source} should hold one reference checkpoint ({', '.join(CHECKPOINT_FILES)}); metalora.pth is in "
            f"{where}. Download it and pass the checkpoint's folder."
        )
    return found[0]


def convert_reference(
    source: str | os.PathLike,
    base: str,
    output: str | os.PathLike,
    *,
    revision: str | None = None,
    base_revision: str | None = None,
    m2p_num_heads: int | None = None,
    lora_scale: float = 1e-3,
) -> ShineConfig:
    """Convert a reference SHINE checkpoint (local folder or Hub id `source`) for the base `base` (path or Hub id) into
    a SHINE PEFT adapter folder `output`: `adapter_config.json`, `adapter_model.safetensors`, a model card naming the
    source, and the base's tokenizer when it has one. Load it with `PeftModel.from_pretrained(base_model, output)`
    (after `import peft_shine`) or `peft_shine.load_shine(base, output)`. Returns the adapter's config.

    Only the base's config is read (its skeleton is built on the meta device), so converting for an 8B base needs
    about the hypernetwork's size in memory, not the base's."""
    folder = resolve_source(source, revision)
    checkpoint = ReferenceCheckpoint.from_folder(folder)
    config, structure = plan_conversion(
        checkpoint, base, m2p_num_heads=m2p_num_heads, lora_scale=lora_scale, revision=base_revision
    )
    tokenizer = base_tokenizer_or_none(base, base_revision)

    def write(staging: str) -> None:
        save_file(
            adapter_state_dict(checkpoint, structure),
            os.path.join(staging, "adapter_model.safetensors"),
            {"format": "pt"},
        )
        config.save_pretrained(staging)
        reference_card(config, str(source), revision, checkpoint.trainer_state, license_of(folder)).save(
            os.path.join(staging, "README.md")
        )
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)

    write_folder_atomically(output, write, prefix=".shine-convert-")
    return config


def base_tokenizer_or_none(base: str, revision: str | None = None):
    """The base's tokenizer, or None when it has none (a tokenizer-less base converts all the same)."""
    try:
        return AutoTokenizer.from_pretrained(base, revision=revision)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def license_of(folder: Path) -> str | None:
    """The `license:` of the model card next to a downloaded checkpoint (None when there is none)."""
    for candidate in (folder / "README.md", folder.parent / "README.md"):
        if candidate.is_file():
            from huggingface_hub import ModelCard

            return ModelCard.load(candidate).data.license
    return None
