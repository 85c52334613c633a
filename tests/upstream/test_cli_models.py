"""`localloom models` with upstreams configured: their models listed, marked remote, next to
the catalog; an upstream that does not answer is named on stderr."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from server_harness import LiveServer
from upstream_harness import token_file, upstream_table

from localloom.config import Settings

LOCALLOOM = Path(sys.executable).with_name("localloom")  # the console script of this venv


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


def _models(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb"}
    return subprocess.run([str(LOCALLOOM), "models", *args], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_models_lists_what_the_upstreams_serve(back: LiveServer) -> None:
    config = Settings().config_dir
    config.mkdir(parents=True, exist_ok=True)
    (config / "upstreams.toml").write_text(
        upstream_table("back", back.base_url, api_key_file=token_file(back), n_ctx=512)
        + upstream_table("gone", f"http://127.0.0.1:{_closed_port()}"), encoding="utf-8")

    listed = _models("--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    remote = {m["id"]: m for m in data["remote_models"]}
    assert remote["tiny"] == {"id": "tiny", "remote": "back", "n_ctx": 512}
    assert all(m["remote"] == "back" for m in remote.values())  # nothing from "gone"
    assert len(data["unreachable_upstreams"]) == 1
    assert data["unreachable_upstreams"][0].startswith("gone (http://127.0.0.1:")
    assert data["models"]  # the catalog is still listed

    shown = _models()
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout[shown.stdout.index("Remote models"):]
    assert "tiny" in table and "back" in table and "512" in table
    assert "upstream gone (http://127.0.0.1:" in " ".join(shown.stderr.split())


def test_models_without_upstreams_lists_no_remote_ones() -> None:
    listed = _models("--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["remote_models"] == [] and data["unreachable_upstreams"] == []
    assert "Remote models" not in _models().stdout
