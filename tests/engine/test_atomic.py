"""Writing a folder atomically: a crash at any point leaves the old or the new folder whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import atomic
from engine.atomic import atomic_dir, recover


def _folder(path: Path, text: str) -> None:
    path.mkdir(parents=True)
    (path / "a.txt").write_text(text)
    (path / "b.txt").write_text(text * 2)


def _content(path: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(path.iterdir())}


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_a_finished_block_replaces_the_folder(tmp_path):
    final = tmp_path / "out"
    _folder(final, "old")
    with atomic_dir(final) as staging:
        (staging / "a.txt").write_text("new")
    assert _content(final) == {"a.txt": "new"}
    assert _siblings(final) == ["out"]


def test_a_failure_inside_the_block_leaves_the_old_folder_and_no_staging(tmp_path):
    final = tmp_path / "out"
    _folder(final, "old")
    with pytest.raises(RuntimeError), atomic_dir(final) as staging:
        (staging / "a.txt").write_text("half")
        raise RuntimeError("disk full")
    assert _content(final) == {"a.txt": "old", "b.txt": "oldold"}
    assert _siblings(final) == ["out"]


class _Crash(BaseException):
    """Stands for the process dying (nothing after it runs, not even cleanup)."""


def _crash_on_call(monkeypatch, n: int) -> None:
    """Make the n-th os.replace in engine.atomic kill the 'process'."""
    calls = {"count": 0}
    real = os.replace

    def replace(src, dst):
        calls["count"] += 1
        if calls["count"] == n:
            raise _Crash
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_during_the_commit_leaves_one_whole_copy_and_the_next_writer_recovers(
    tmp_path, monkeypatch, crash_at
):
    final = tmp_path / "out"
    _folder(final, "old")
    staging = atomic.stage_dir(final)
    (staging / "a.txt").write_text("new")
    _crash_on_call(monkeypatch, crash_at)
    with pytest.raises(_Crash):
        atomic.commit_dir(staging, final)
    monkeypatch.undo()
    # Whatever the moment, the old folder is whole somewhere: at its place, or renamed aside.
    whole = final if final.exists() else final.with_name(".old-out")
    assert _content(whole) == {"a.txt": "old", "b.txt": "oldold"}
    recover(final)
    assert _content(final) == {"a.txt": "old", "b.txt": "oldold"}
    assert _siblings(final) == ["out"]  # the interrupted staging folder is gone too


def test_a_crash_after_the_new_folder_is_in_place_keeps_the_new_one(tmp_path, monkeypatch):
    final = tmp_path / "out"
    _folder(final, "old")
    staging = atomic.stage_dir(final)
    (staging / "a.txt").write_text("new")

    real = atomic.shutil.rmtree
    calls = {"count": 0}

    def rmtree_then_die(*args, **kwargs):  # the second removal is of the old folder
        calls["count"] += 1
        if calls["count"] == 2:
            raise _Crash
        real(*args, **kwargs)

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree_then_die)
    with pytest.raises(_Crash):
        atomic.commit_dir(staging, final)
    monkeypatch.undo()
    assert _content(final) == {"a.txt": "new"}
    recover(final)
    assert _content(final) == {"a.txt": "new"}
    assert _siblings(final) == ["out"]


def test_a_first_write_needs_no_old_folder(tmp_path):
    final = tmp_path / "deep" / "out"
    with atomic_dir(final) as staging:
        (staging / "x").write_text("1")
    assert _content(final) == {"x": "1"}
