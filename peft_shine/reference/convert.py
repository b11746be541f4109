"""Writing a reference checkpoint as a SHINE PEFT adapter folder: its tensors under the names PEFT saves, the
config, a model card naming the source, and the base's tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from ..cards import HypernetworkFacts, reference_card
from ..config import ShineConfig
from ..files import write_folder_atomically
from ..structure import DecoderStructure
from .checkpoint import BLOCK_KEYS, CHECKPOINT_FILES, REFERENCE_MODULES, ReferenceCheckpoint
from .plan import plan_conversion


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
        reference_card(
            HypernetworkFacts.of(config), str(source), revision, checkpoint.trainer_state, license_of(folder)
        ).save(os.path.join(staging, "README.md"))
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
