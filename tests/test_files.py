"""The one atomic folder writer: a crash while writing or while moving into place leaves the old folder as it was
and no staging or set-aside folder behind."""

from __future__ import annotations

import os

import pytest

from peft_shine.files import write_folder_atomically


def write_marker(text: str):
    def write(folder: str) -> None:
        with open(os.path.join(folder, "marker.txt"), "w") as f:
            f.write(text)

    return write


def test_a_new_folder_appears_complete_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "out"
    write_folder_atomically(target, write_marker("one"))
    write_folder_atomically(target, write_marker("two"))
    assert (target / "marker.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_crash_while_writing_keeps_the_old_folder(tmp_path):
    target = tmp_path / "out"
    write_folder_atomically(target, write_marker("old"))

    def crashing(folder: str) -> None:
        write_marker("half")(folder)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomically(target, crashing)
    assert (target / "marker.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failing_move_restores_the_old_folder(tmp_path, monkeypatch):
    target = tmp_path / "out"
    write_folder_atomically(target, write_marker("old"))
    replace = os.replace

    def failing(source, destination):
        if os.path.basename(source).startswith(".stage-"):
            raise OSError("disk full")
        replace(source, destination)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        write_folder_atomically(target, write_marker("new"), prefix=".stage-")
    assert (target / "marker.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
