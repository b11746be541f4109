"""Writing a folder or a file so that readers never see it half-written: stage it beside the target, then rename it
into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_folder_atomically(
    target: str | os.PathLike,
    write: Callable[[str], None],
    prefix: str = ".shine-staging-",
    aside_prefix: str = ".shine-replaced-",
) -> None:
    """Call `write(staging)` to fill a temporary folder next to `target`, then move it to `target`.

    An interrupted write never leaves a half-written folder at `target`; an existing `target` is renamed aside first
    and deleted only once the new one is in place (restored if the move fails). The new folder gets the permissions
    the umask allows (`make_readable`). `prefix` and `aside_prefix` name the staging and the set-aside folders."""
    target = os.fspath(target)
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=prefix, dir=parent)
    replaced = None
    try:
        write(staging)
        make_readable(staging)
        if os.path.isdir(target):
            replaced = tempfile.mkdtemp(prefix=aside_prefix, dir=parent)
            os.replace(target, replaced)
        os.replace(staging, target)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
        if replaced is not None:
            if os.path.isdir(target):
                shutil.rmtree(replaced)
            else:
                os.replace(replaced, target)


def write_file_atomically(target: str | os.PathLike, write: Callable[[str], None], prefix: str = ".shine-") -> None:
    """Call `write(temporary_path)` for a file next to `target`, flush it to disk, then rename it to `target`; the
    temporary file is removed if anything fails, so `target` is the old file or the complete new one."""
    target = os.fspath(target)
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=prefix, dir=parent)
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        make_readable(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _current_umask() -> int:
    """The process umask, read from /proc where possible (setting and restoring it races with other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: str | os.PathLike) -> None:
    """Give `path` (and, for a folder, everything in it) the permissions the umask allows, as a plain `mkdir` / `open`
    would: temporary folders and files are created private (0700 / 0600, also by safetensors), and a server running
    as another user must be able to read exported adapters."""
    mask = _current_umask()
    path = Path(path)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)
