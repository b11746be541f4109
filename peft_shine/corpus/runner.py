"""`absorb_corpus`: absorb every document of a corpus into its own plain LoRA adapter, written as folders or shards,
on one process or many (torchrun / accelerate launch: each rank its own batches or shards), resumable.

Which process does what: the batch plan (`plan_batches`) is cut from the whole corpus; in folder format batch j goes to
rank j % world_size, in shard format shard k (documents k*S .. (k+1)*S-1, planned on their own) to rank k % world_size.
No two ranks write the same id, and every adapter is bit-identical to the one a single uninterrupted process writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..cards import base_weights_of
from ..model import ShineModel
from ..options import AbsorbOptions
from .batching import (
    AbsorbedDocument,
    count_tokens,
    default_batch_size,
    iter_absorbed,
    plan_batches,
    shine_model_of,
)
from .index import PARTS, append_entries, is_finished, known_entries, mark_done, merge_index, wait_for_ranks
from .records import Document, SkippedRecord, read_corpus
from .storage import (
    MANIFEST,
    TEMP_PREFIX,
    read_shard_adapter,
    read_shard_header,
    shard_name,
    with_base_model,
    write_folder,
    write_shard,
)

FORMATS = ("folders", "shards")


@dataclass
class CorpusSummary:
    """What one process did. `absorbed`: documents it absorbed now; `reused`: its documents already finished by an
    earlier run; `skipped`: bad records (the same list on every process); `merged`: whether it wrote the index."""

    output: Path
    format: str
    rank: int
    world_size: int
    absorbed: int = 0
    reused: int = 0
    seconds: float = 0.0
    skipped: list[SkippedRecord] = field(default_factory=list)
    merged: bool = False

    @property
    def documents_per_second(self) -> float:
        return self.absorbed / self.seconds if self.seconds > 0 else 0.0


def process_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments when given, else torch.distributed's when initialized, else the RANK and
    WORLD_SIZE environment variables (set by torchrun and accelerate launch), else (0, 1)."""
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if rank is None or world_size is None or not 0 <= rank < world_size:
        raise ValueError(f"Need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    return rank, world_size


def settings_fingerprint(
    shine: ShineModel, tokenizer: PreTrainedTokenizerBase, max_rank: int | None, base_model: str | None
) -> str:
    """16 hex digits that change whenever the adapters would: the SHINE weights (hypernetwork and meta-LoRA, hashed
    byte for byte), the base's name, the tokenizer, and the settings that shape an adapter."""
    digest = hashlib.sha256()
    for name, tensor in sorted(shine.state_dict().items()):
        if "shine_" in name:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    config = shine.shine_config
    settings = {
        "base": base_model or getattr(shine.model, "name_or_path", None),
        "tokenizer": [getattr(tokenizer, "name_or_path", ""), len(tokenizer)],
        "max_rank": max_rank,
        **{
            key: getattr(config, key)
            for key in (
                "lora_rank",
                "lora_scale",
                "max_context_tokens",
                "context_overflow",
                "chunk_combination",
                "chunk_overlap_tokens",
            )
        },
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _check_output(directory: Path, format: str) -> None:
    """Refuse a non-empty folder that is not an absorb_corpus output, or one written in the other format."""
    manifest = directory / MANIFEST
    if manifest.is_file():
        found = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        if found != format:
            raise ValueError(f"{directory} holds a {found!r} corpus; write format={format!r} to another folder.")
    elif directory.is_dir() and not (directory / PARTS).is_dir():
        if any(not path.name.startswith(TEMP_PREFIX) for path in directory.iterdir()):
            raise ValueError(f"{directory} is not empty and is not an absorb_corpus output; choose another folder.")


def _entry(item: AbsorbedDocument, rank: int, fingerprint: str, location: dict[str, str]) -> dict[str, Any]:
    absorbed = item.absorbed
    return {
        "id": item.document.id,
        "status": "ok",
        **location,
        "sha256": item.document.sha256,
        "tokens": absorbed.context_token_counts[0],
        "chunks": absorbed.num_chunks[0],
        "lora_rank": absorbed.rank,
        "compression_error": absorbed.compression_error,
        "process_rank": rank,
        "seconds": round(item.seconds, 6),
        "fingerprint": fingerprint,
        "finished_at": time.time(),
    }


def absorb_corpus(
    model: PeftModel | ShineModel,
    records: Any,
    output: str | os.PathLike,
    *,
    text_field: str = "text",
    id_field: str = "id",
    split: str | None = None,
    format: str = "folders",
    batch_size: int | None = None,
    window: int | None = None,
    shard_size: int = 256,
    options: AbsorbOptions | None = None,
    on_error: str = "stop",
    tokenizer: PreTrainedTokenizerBase | None = None,
    base_model: str | None = None,
    adapter_name: str | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    merge_timeout: float | None = None,
) -> CorpusSummary:
    """Absorb every document of `records` and write its adapter under `output`, plus `index.jsonl` and `corpus.json`.

    Args:
        records: a .jsonl / .jsonl.gz path, a `datasets` folder, a Hub dataset id (with `split`), a `datasets.Dataset`
            or an iterable of dicts; `text_field` / `id_field` name the fields (see `read_corpus`).
        format: "folders" (`output/<id>/`, a plain PEFT LoRA + model card each) or "shards" (`shard_size` documents
            per safetensors file; read back with `load_absorbed`).
        batch_size, window: documents per encode batch (default: `default_batch_size`, 1 on CPU, 8 on a GPU), and
            how many consecutive documents are sorted by length together (see `plan_batches`).
        options: the per-absorb choices (`AbsorbOptions`: chunking, combination, rank budget `max_lora_rank`, ...);
            default: the adapter's config.
        on_error: "stop" (first bad record raises, nothing is written) or "skip" (bad records are listed in the index).
        base_model: the base model name written to adapter_config.json and the model card (default: the base's
            `name_or_path`); `adapter_name`: the SHINE adapter named in the card.
        rank, world_size: this process's share (default: torch.distributed, else RANK / WORLD_SIZE, else 0 of 1).
        merge_timeout: seconds rank 0 waits for the other ranks before merging the index (None: no limit).
    Documents already finished by an earlier run into `output` (same text hash and settings) are not absorbed again.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}.")
    started = time.perf_counter()
    documents, skipped = read_corpus(records, text_field=text_field, id_field=id_field, split=split, on_error=on_error)
    rank, world_size = process_rank(rank, world_size)
    directory = Path(output)
    _check_output(directory, format)
    (directory / PARTS).mkdir(parents=True, exist_ok=True)  # marks the folder as ours before anything is written
    shine = shine_model_of(model)
    batch_size = batch_size or default_batch_size(shine)
    tokenizer = shine.resolve_tokenizer(tokenizer)
    options = shine.absorb_options(options)
    fingerprint = settings_fingerprint(shine, tokenizer, options, base_model)
    summary = CorpusSummary(directory, format, rank, world_size, skipped=skipped)
    run = _Run(
        shine,
        documents,
        directory,
        known_entries(directory),
        fingerprint,
        summary,
        tokenizer,
        options,
        batch_size,
        window,
        base_model,
        adapter_name,
        progress,
    )
    run.shards(shard_size) if format == "shards" else run.folders()
    summary.seconds = time.perf_counter() - started
    # what every process of this run agrees on without talking: settings, corpus, and torchrun's id of the run
    launch = os.environ.get("TORCHELASTIC_RUN_ID")
    run_key = hashlib.sha256(
        json.dumps([fingerprint, format, world_size, launch, [(d.id, d.sha256) for d in documents]]).encode()
    ).hexdigest()
    mark_done(directory, rank, world_size, run_key)
    if rank == 0:
        wait_for_ranks(directory, world_size, run_key, merge_timeout)
        manifest = {
            "format": format,
            "fingerprint": fingerprint,
            "base_model_name_or_path": base_model or getattr(shine.model, "name_or_path", None) or None,
            "base_model_weights": base_weights_of(shine.model),
            "module_paths": {key: path for path, key in shine._target_keys.items()},
            "adapter": adapter_name,
            "world_size": world_size,
            "settings": {
                "batch_size": batch_size,
                "window": window,
                "shard_size": shard_size,
                "max_rank": options.max_lora_rank,
            },
        }
        merge_index(directory, documents, skipped, fingerprint, manifest)
        summary.merged = True
    return summary


@dataclass
class _Run:
    """One process's share of an `absorb_corpus` call."""

    shine: ShineModel
    documents: list[Document]
    directory: Path
    known: dict[str, dict[str, Any]]
    fingerprint: str
    summary: CorpusSummary
    tokenizer: PreTrainedTokenizerBase
    options: AbsorbOptions
    batch_size: int
    window: int | None
    base_model: str | None
    adapter_name: str | None
    progress: bool

    def _bar(self, total: int) -> tqdm:
        rank, world_size = self.summary.rank, self.summary.world_size
        name = "absorbing" if world_size == 1 else f"absorbing (rank {rank}/{world_size})"
        layout = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"  # always documents/s
        return tqdm(total=total, desc=name, unit=" documents", bar_format=layout, disable=not self.progress)

    def _absorb(self, documents: list[Document], batches: list[list[int]], wanted: set[int]):
        for item in iter_absorbed(
            self.shine, documents, batches=batches, wanted=wanted, options=self.options, tokenizer=self.tokenizer
        ):
            yield item, with_base_model(item.absorbed, self.base_model)

    def _done(self, document: Document) -> bool:
        return is_finished(self.known.get(document.id), document, self.fingerprint)

    def folders(self) -> None:
        """Batch j of the plan belongs to rank j % world_size; each unfinished document gets its folder."""
        rank, world_size = self.summary.rank, self.summary.world_size
        plan = plan_batches(count_tokens(self.documents, self.tokenizer), self.batch_size, self.window)
        mine = [batch for j, batch in enumerate(plan) if j % world_size == rank]
        positions = [i for batch in mine for i in batch]
        docs = self.documents
        wanted = {i for i in positions if not (self._done(docs[i]) and (self.directory / docs[i].id).is_dir())}
        self.summary.reused = len(positions) - len(wanted)
        with self._bar(len(wanted)) as bar:
            for item, absorbed in self._absorb(docs, mine, wanted):
                entry = _entry(item, rank, self.fingerprint, {"path": item.document.id})
                write_folder(self.directory, absorbed, entry, self.adapter_name)
                append_entries(self.directory, rank, [entry])
                self.summary.absorbed += 1
                bar.update()

    def shards(self, shard_size: int) -> None:
        """Shard k (documents k*S .. (k+1)*S-1) belongs to rank k % world_size and is rewritten whole: documents whose
        finished adapter is in the old shard file are copied from it, the others absorbed (planned within the
        shard, so the result does not depend on the number of processes)."""
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}.")
        rank, world_size = self.summary.rank, self.summary.world_size
        shards = [self.documents[s : s + shard_size] for s in range(0, len(self.documents), shard_size)]
        work = []
        for k in range(rank, len(shards), world_size):
            path = self.directory / shard_name(k)
            old = {}
            if path.is_file():
                metadata, ids = read_shard_header(path)
                old = {i: json.loads(metadata[f"adapter:{i}"]) for i in ids}
            reusable = {d.id for d in shards[k] if is_finished(old.get(d.id), d, self.fingerprint)}
            work.append((k, path, old, reusable))
        shine_info = {
            "module_paths": {key: path for path, key in self.shine._target_keys.items()},
            "base": self.base_model or getattr(self.shine.model, "name_or_path", None),
        }
        with self._bar(sum(len(shards[k]) - len(reusable) for k, _, _, reusable in work)) as bar:
            for k, path, old, reusable in work:
                shard = shards[k]
                self.summary.reused += len(reusable)
                if len(reusable) == len(shard) == len(old):
                    unrecorded = [old[d.id] for d in shard if not self._done(d)]
                    if unrecorded:  # written by a run killed before it recorded them
                        append_entries(self.directory, rank, unrecorded)
                    continue
                wanted = {i for i, d in enumerate(shard) if d.id not in reusable}
                plan = plan_batches(count_tokens(shard, self.tokenizer), self.batch_size, self.window)
                fresh = {}
                for item, absorbed in self._absorb(shard, plan, wanted):
                    entry = _entry(item, rank, self.fingerprint, {"shard": shard_name(k)})
                    fresh[item.document.id] = (entry, absorbed.lora_state_dict())
                    self.summary.absorbed += 1
                    bar.update()
                adapters = [fresh[d.id] if d.id in fresh else read_shard_adapter(path, d.id) for d in shard]
                write_shard(path, adapters, shine_info)
                append_entries(self.directory, rank, [entry for entry, _ in adapters])
