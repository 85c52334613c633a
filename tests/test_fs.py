"""The one atomic write (localloom._fs): old or new file, never half; no temp left; modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from localloom._fs import temp_name, write_atomic


def test_write_atomic_replaces_text_and_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "a.json"
    write_atomic(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    write_atomic(path, b"\x00new")
    assert path.read_bytes() == b"\x00new"
    assert sorted(p.name for p in folder.iterdir()) == ["a.json"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_write_atomic_creates_secret_files_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    write_atomic(path, "secret", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]  # bytes() of an int is refused
    assert path.read_text(encoding="utf-8") == "old"
    assert not temp_name(path).exists()


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_write_atomic_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep", encoding="utf-8")
    path = tmp_path / "a.txt"
    temp_name(path).symlink_to(victim)  # planted where our temp file goes
    write_atomic(path, "new")
    assert victim.read_text(encoding="utf-8") == "keep"
    assert path.read_text(encoding="utf-8") == "new"
