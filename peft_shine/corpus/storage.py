"""Where absorbed documents are kept: one plain PEFT LoRA folder per document, or packed safetensors shards, both
written atomically, and `load_absorbed` that reads one document's adapter back as an `AbsorbedContext`.

Folder layout (`format="folders"`): `DIR/<id>/` holds exactly what `AbsorbedContext.save_pretrained` writes
(`adapter_config.json`, `adapter_model.safetensors`, `shine_context.json`) plus a model card `README.md`.

Shard layout (`format="shards"`): `DIR/shards/shard-<k>.safetensors` holds every adapter of shard k. Tensor names are
`<id>::base_model.model.<module path>.lora_A.weight` (r, in) and `...lora_B.weight` (out, r), the names of the
document's own `adapter_model.safetensors` prefixed by its id; the header metadata holds `ids` (JSON list, in shard
order), `shine` (JSON: module paths, base model) and per document `adapter:<id>` (JSON: its LoRA config and index
entry). Reading one id opens the file lazily (`safe_open`) and reads that id's tensors only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from safetensors.torch import save_file

from ..absorbed import AbsorbedContext
from ..cards import compression_note, lora_card
from ..files import write_file_atomically, write_folder_atomically

MANIFEST = "corpus.json"
INDEX = "index.jsonl"
SHARD_DIR = "shards"
TEMP_PREFIX = ".tmp-"


def shard_name(index: int) -> str:
    """Relative path of shard `index`, e.g. "shards/shard-00003.safetensors"."""
    return f"{SHARD_DIR}/shard-{index:05d}.safetensors"


def write_json_atomic(path: Path, payload: Any, lines: bool = False) -> None:
    """Write JSON (or JSON Lines from a list) to a temporary file beside `path`, then rename it into place."""

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as out:
            if lines:
                out.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in payload)
            else:
                json.dump(payload, out, indent=2, ensure_ascii=False)

    write_file_atomically(path, write, prefix=TEMP_PREFIX)


def model_card(absorbed: AbsorbedContext, entry: dict[str, Any], adapter: str | None) -> ModelCard:
    """The model card of one document's adapter: metadata (library_name peft, base_model, tags, the document's id
    and text hash) and a short text on how it was made and how to load it."""
    made = (
        f"in one forward pass by the SHINE hypernetwork `{adapter or '(in memory)'}` after reading document "
        f"`{entry['id']}` ({entry['tokens']} tokens in {entry['chunks']} chunk(s), text SHA-256 `{entry['sha256']}`) "
        "with `peft_shine.absorb_corpus` / `peft-shine absorb-corpus`"
        + compression_note(absorbed.rank, absorbed.compression_error)
    )
    document = {key: entry[key] for key in ("id", "sha256", "tokens", "chunks", "lora_rank")}
    return lora_card(absorbed.card_facts(), made, tags=["absorbed-context"], shine_document=document)


def write_folder(directory: Path, absorbed: AbsorbedContext, entry: dict[str, Any], adapter: str | None) -> None:
    """Write `DIR/<id>/` (what `AbsorbedContext.save_pretrained` writes, with the document's model card), staged in
    a temporary folder of `DIR` and renamed into place, so the folder is either the old one or the complete new one."""
    card = model_card(absorbed, entry, adapter)
    write_folder_atomically(
        directory / entry["id"],
        lambda folder: absorbed.write_files(folder, card),
        prefix=TEMP_PREFIX,
        aside_prefix=f"{TEMP_PREFIX}old-",
    )


def with_base_model(absorbed: AbsorbedContext, base_model: str | None) -> AbsorbedContext:
    """`absorbed` naming `base_model` as its base (written to adapter_config.json and the card); unchanged if None."""
    return absorbed if base_model is None else dataclasses.replace(absorbed, base_model_name_or_path=base_model)


# ----------------------------------------------------------------------------------------------------------------------
# Shards


def read_shard_header(path: Path) -> tuple[dict[str, str], list[str]]:
    """(metadata, ids in shard order) of a shard file, read from its header only."""
    with safe_open(str(path), framework="pt") as shard:
        metadata = shard.metadata() or {}
    return metadata, json.loads(metadata.get("ids", "[]"))


def write_shard(
    path: Path,
    adapters: list[tuple[dict[str, Any], dict[str, torch.Tensor]]],
    shine: dict[str, Any],
) -> None:
    """Write one shard atomically. `adapters`: (index entry, PEFT LoRA state dict `lora_state_dict()`) per document,
    in shard order; `shine`: module paths and base model, shared by the shard's documents."""
    tensors, metadata = (
        {},
        {"format": "pt", "ids": json.dumps([e["id"] for e, _ in adapters]), "shine": json.dumps(shine)},
    )
    for entry, state in adapters:
        tensors.update({f"{entry['id']}::{name}": tensor for name, tensor in state.items()})
        metadata[f"adapter:{entry['id']}"] = json.dumps(entry)
    write_file_atomically(path, lambda temporary: save_file(tensors, temporary, metadata), prefix=TEMP_PREFIX)


def read_shard_adapter(path: Path, doc_id: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(entry, PEFT LoRA state dict) of one document of a shard; only its tensors are read."""
    with safe_open(str(path), framework="pt") as shard:
        metadata = shard.metadata() or {}
        key = f"adapter:{doc_id}"
        if key not in metadata:
            raise KeyError(f"{path} holds no adapter for id {doc_id!r}.")
        entry = json.loads(metadata[key])
        shine = json.loads(metadata["shine"])
        names = [f"base_model.model.{p}.lora_{ab}.weight" for p in shine["module_paths"].values() for ab in "AB"]
        return entry, {name: shard.get_tensor(f"{doc_id}::{name}") for name in names}


# ----------------------------------------------------------------------------------------------------------------------
# Reading back


def absorbed_from_state(
    state: dict[str, torch.Tensor],
    module_paths: dict[str, str],
    info: dict[str, Any],
    base: str | None,
    weights: str | None = None,
) -> AbsorbedContext:
    """The `AbsorbedContext` of a PEFT LoRA state dict (lora_A (r, in), lora_B (out, r) per module): factors
    A (1, in, r) = lora_A^T, B (1, r, out) = lora_B^T, exactly the tensors `save_pretrained` wrote."""
    factors = {}
    for key, path in module_paths.items():
        lora_a = state[f"base_model.model.{path}.lora_A.weight"]
        lora_b = state[f"base_model.model.{path}.lora_B.weight"]
        factors[key] = (lora_a.T.unsqueeze(0), lora_b.T.unsqueeze(0))
    return AbsorbedContext(
        factors=factors,
        module_paths=dict(module_paths),
        context_token_counts=[info["tokens"]],
        base_model_name_or_path=base,
        base_model_weights=weights,
        num_chunks=[info["chunks"]],
        compression_error=info.get("compression_error"),
    )


class CorpusReader:
    """Reads adapters from an `absorb_corpus` output folder (either format). It reads `corpus.json` and
    `index.jsonl` once; `load(id)` then reads that document's tensors only. Keep one per folder in a server."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        manifest = self.directory / MANIFEST
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} not found: {self.directory} is not a finished absorb_corpus output.")
        self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        with (self.directory / INDEX).open(encoding="utf-8") as handle:
            entries = [json.loads(line) for line in handle if line.strip()]
        self.entries = {e["id"]: e for e in entries if e.get("status") == "ok"}

    @property
    def ids(self) -> list[str]:
        """Ids of every absorbed document, in corpus order."""
        return list(self.entries)

    def __contains__(self, doc_id: str) -> bool:
        return doc_id in self.entries

    def load(self, doc_id: str) -> AbsorbedContext:
        """The `AbsorbedContext` of document `doc_id` (usable with `model.use_context`, exportable again)."""
        entry = self.entries.get(doc_id)
        if entry is None:
            raise KeyError(f"No absorbed document with id {doc_id!r} in {self.directory} ({len(self.entries)} ids).")
        base = self.manifest["base_model_name_or_path"]
        if self.manifest["format"] == "shards":
            info, state = read_shard_adapter(self.directory / entry["shard"], doc_id)
        else:
            folder = self.directory / entry["path"]
            with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as tensors:
                state = {name: tensors.get_tensor(name) for name in tensors.keys()}
            info = entry
        weights = self.manifest.get("base_model_weights")
        return absorbed_from_state(state, self.manifest["module_paths"], info, base, weights)


def load_absorbed(directory: str | os.PathLike, doc_id: str) -> AbsorbedContext:
    """The `AbsorbedContext` of document `doc_id` from an `absorb_corpus` output folder (folders or shards format),
    reading only that document's tensors. For many lookups keep a `CorpusReader(directory)`."""
    return CorpusReader(directory).load(doc_id)
