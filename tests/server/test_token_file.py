"""The server token file: created once, private, repaired when damaged or too open."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from localloom.server.security import TOKEN_FILE_NAME, load_or_create_token

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def test_token_is_created_once_and_reused(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path / "config")
    assert len(token) >= 32
    assert load_or_create_token(tmp_path / "config") == token
    assert (tmp_path / "config" / TOKEN_FILE_NAME).read_text().strip() == token


@posix_only
def test_token_file_is_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load_or_create_token(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / TOKEN_FILE_NAME).stat().st_mode) == 0o600


@posix_only
def test_a_world_readable_token_file_is_made_private(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path)
    path = tmp_path / TOKEN_FILE_NAME
    path.chmod(0o644)
    assert load_or_create_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_token_file_is_replaced_with_a_new_private_token(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE_NAME
    path.write_text("short\n")
    token = load_or_create_token(tmp_path)
    assert token != "short" and len(token) >= 32
    assert path.read_text().strip() == token
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_servers_starting_together_agree_on_one_token(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        tokens = set(pool.map(lambda _: load_or_create_token(tmp_path), range(16)))
    assert len(tokens) == 1
