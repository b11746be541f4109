"""The corpus index: per-process progress files while a run is going, and the merged `index.jsonl` + `corpus.json`
that rank 0 writes once every process has finished.

While running, process r appends one JSON line per finished document to `DIR/.parts/rank-<r>.jsonl` (flushed and
fsynced after its adapter is in place, so a line always means a complete adapter) and, when done, writes
`DIR/.parts/done-<r>-of-<W>.json`. Rank 0 waits for all W markers, then writes `index.jsonl` (one line per document
in corpus order, then one per skipped record) and `corpus.json` atomically and removes `.parts` and stale temporary
files. Processes never talk to each other; a shared output folder is all a multi-process run needs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import Document, SkippedRecord
from .storage import INDEX, MANIFEST, SHARD_DIR, TEMP_PREFIX, write_json_atomic

PARTS = ".parts"


def read_jsonl_tolerant(path: Path) -> list[dict[str, Any]]:
    """JSON objects of a JSON Lines file, skipping a line cut short by a killed writer (only ever the last one)."""
    entries = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries


def known_entries(directory: Path) -> dict[str, dict[str, Any]]:
    """Finished-document entries by id from `index.jsonl` and every progress file; the latest `finished_at` wins."""
    sources = [directory / INDEX, *sorted((directory / PARTS).glob("rank-*.jsonl"))]
    entries: dict[str, dict[str, Any]] = {}
    for path in sources:
        if not path.is_file():
            continue
        for entry in read_jsonl_tolerant(path):
            if entry.get("status") != "ok" or "id" not in entry:
                continue
            old = entries.get(entry["id"])
            if old is None or entry.get("finished_at", 0) >= old.get("finished_at", 0):
                entries[entry["id"]] = entry
    return entries


def is_finished(entry: dict[str, Any] | None, document: Document, fingerprint: str) -> bool:
    """Whether `entry` records `document`'s current text absorbed with the current settings."""
    return entry is not None and entry.get("sha256") == document.sha256 and entry.get("fingerprint") == fingerprint


def append_entries(directory: Path, rank: int, entries: Sequence[dict[str, Any]]) -> None:
    """Append finished-document entries to this process's progress file, durably."""
    path = directory / PARTS / f"rank-{rank:05d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries)
        handle.flush()
        os.fsync(handle.fileno())


def _marker(directory: Path, rank: int, world_size: int) -> Path:
    return directory / PARTS / f"done-{rank:05d}-of-{world_size:05d}.json"


def mark_done(directory: Path, rank: int, world_size: int, run_key: str) -> None:
    """Record that process `rank` finished its share of the run identified by `run_key`."""
    write_json_atomic(_marker(directory, rank, world_size), {"rank": rank, "run_key": run_key})


def wait_for_ranks(directory: Path, world_size: int, run_key: str, timeout: float | None, poll: float = 0.5) -> None:
    """Block until every process of the run has written its done marker for `run_key`; TimeoutError naming the
    missing ranks after `timeout` seconds (None: wait as long as it takes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        missing = []
        for rank in range(world_size):
            marker = _marker(directory, rank, world_size)
            try:
                done = json.loads(marker.read_text(encoding="utf-8")).get("run_key") == run_key
            except (OSError, json.JSONDecodeError):
                done = False
            if not done:
                missing.append(rank)
        if not missing:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(
                f"Rank 0 waited {timeout:.0f} s for ranks {missing} of {world_size} to finish in {directory}; "
                "rerun the missing ranks (finished documents are kept), then rank 0 to write the index."
            )
        time.sleep(poll)


def merge_index(
    directory: Path,
    documents: Sequence[Document],
    skipped: Sequence[SkippedRecord],
    fingerprint: str,
    manifest: dict[str, Any],
) -> list[dict[str, Any]]:
    """Write `index.jsonl` (every document in corpus order, then the skipped records) and `corpus.json`, then remove
    the progress files, temporary files and shards no longer referenced. Returns the document entries.
    Raises RuntimeError when a document has no finished adapter (a process did not do its share)."""
    entries = known_entries(directory)
    missing = [d.id for d in documents if not is_finished(entries.get(d.id), d, fingerprint)]
    if missing:
        raise RuntimeError(
            f"{len(missing)} document(s) have no finished adapter in {directory} (e.g. {missing[:5]}) although every "
            "process reported done; rerun the same command to absorb them."
        )
    ordered = [entries[d.id] for d in documents]
    write_json_atomic(directory / INDEX, [*ordered, *(s.as_json() for s in skipped)], lines=True)
    write_json_atomic(directory / MANIFEST, {**manifest, "documents": len(ordered), "skipped": len(skipped)})
    shutil.rmtree(directory / PARTS, ignore_errors=True)
    referenced = {e["shard"] for e in ordered if "shard" in e}
    for path in [*directory.glob(f"{TEMP_PREFIX}*"), *(directory / SHARD_DIR).glob("*")]:
        relative = path.relative_to(directory).as_posix()
        if path.name.startswith(TEMP_PREFIX) or (path.parent.name == SHARD_DIR and relative not in referenced):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return ordered
