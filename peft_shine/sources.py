"""Where records come from: paths given one at a time, comma-separated or as a list; the file kind from the name; JSON
Lines files read one line at a time; the rows of a `datasets.Dataset`.

Every record comes with its location ("<path>, line <n>", "dataset row <i>"), and every error names it. The one
JSON Lines reader (`jsonl_lines`) hands a bad line's error back instead of stopping, so a caller can report the line
and go on (`peft_shine.corpus`, `on_error="skip"`); `iter_jsonl` raises at the first bad line instead.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO, Union

if TYPE_CHECKING:
    import datasets

Sources = Union[str, os.PathLike, Sequence[str | os.PathLike], "datasets.Dataset"]


def is_hf_dataset(obj: Any) -> bool:
    """True for a `datasets.Dataset`. The optional `datasets` package is not imported here: a Dataset can only exist
    once it has been."""
    module = sys.modules.get("datasets")
    return module is not None and isinstance(obj, module.Dataset)


def is_dataset_folder(path: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return path.is_dir() and any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))


def dataset_split(dataset: Any, split: str | None, source: str) -> Any:
    """The Dataset itself, or `split` of a DatasetDict (the only split when there is one)."""
    if not hasattr(dataset, "keys"):
        return dataset
    names = list(dataset.keys())
    if split is None and len(names) == 1:
        split = names[0]
    if split not in names:
        raise ValueError(f"{source} has the splits {names}; choose one with split= (--split).")
    return dataset[split]


def looks_like_a_path(source: str) -> bool:
    """A local path rather than a Hub dataset id ("name" or "owner/name")."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or source.endswith((".jsonl", ".gz"))


def load_dataset_source(name: str, config: str | None = None, split: str | None = None) -> datasets.Dataset:
    """A `datasets.Dataset` from a `save_to_disk` folder (`split` of a DatasetDict) or a Hub dataset id
    (`datasets.load_dataset(name, config, split=split)`; offline it must be in the Hugging Face cache). Raises
    FileNotFoundError for a path that is not such a folder."""
    import datasets

    path = Path(name).expanduser()
    if is_dataset_folder(path):
        return dataset_split(datasets.load_from_disk(str(path)), split, name)
    if path.exists() or looks_like_a_path(name):
        raise FileNotFoundError(f"{name}: not a `datasets` folder (Dataset.save_to_disk) nor a Hub dataset id.")
    return dataset_split(datasets.load_dataset(name, config, split=split), split, name)


def source_paths(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Paths from one path, a comma-separated string of paths, or a list of paths."""
    if isinstance(sources, os.PathLike):
        sources = [sources]
    elif isinstance(sources, str):
        sources = [sources] if Path(sources).exists() else sources.split(",")
    paths = [Path(str(source).strip()) for source in sources if str(source).strip()]
    if not paths:
        raise ValueError("No data source given: pass a file path, a comma-separated string of paths, or a list.")
    return paths


def file_kind(path: Path) -> str:
    """The kind, "jsonl" or "txt", from the file name (a trailing .gz is allowed); ValueError for anything else."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in (".jsonl", ".txt"):
        return suffixes[-1][1:]
    raise ValueError(f"{path}: unsupported file type; use .jsonl, .jsonl.gz, .txt or .txt.gz.")


def open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file for reading, decompressing .gz files."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _open_binary(path: Path) -> BinaryIO:
    """Open a file for reading bytes, decompressing .gz files."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")


def _json_object(raw: bytes, where: str) -> dict:
    """The JSON object on one line; ValueError starting with `where` for a non-UTF-8 byte, bad JSON or a non-object."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{where}: not UTF-8 text ({error.reason}: byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "convert the file to UTF-8."
        ) from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg}).") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
    return record


def jsonl_lines(path: Path) -> Iterator[tuple[str, dict | ValueError]]:
    """(location "<path>, line <n>", the line's JSON object or its ValueError) for every non-blank line of a JSON
    Lines file (optionally .gz). Lines are decoded one at a time, so a bad line neither stops the reading nor hides
    its line number."""
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{path}, line {number}"
            try:
                record: dict | ValueError = _json_object(raw, where)
            except ValueError as error:
                record = error
            yield where, record


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, record) for every non-blank line of a JSON Lines file; the first bad line raises its ValueError."""
    for where, record in jsonl_lines(path):
        if isinstance(record, ValueError):
            raise record
        yield where, record


def iter_rows(dataset: datasets.Dataset) -> Iterator[tuple[str, dict]]:
    """(location "dataset row <i>", row) for every row of a `datasets.Dataset`."""
    for index, row in enumerate(dataset):
        yield f"dataset row {index}", row
