"""Point 8: `ps`, `load`, `stop`/`unload` against a live `localloom serve` started with
`--ctx/--parallel/--threads`, and `show`, which works offline from the GGUF header."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import COLUMNS, lines_of, localloom

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from server_harness import MODEL, LiveServer, start_server


@pytest.fixture(scope="module")
def served(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the module, started with the new serve flags."""
    live = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf,
                        args=("--ctx", "512", "--parallel", "2", "--threads", "1"))
    yield live
    live.stop()


def _cli(live: LiveServer, *args: str) -> tuple[int, str, str]:
    result = localloom(*args, "--port", str(live.port),
                       env={"LOCALLOOM_HOME": str(live.home)})
    return result.returncode, result.stdout, result.stderr


def test_serve_flags_set_context_parallel_slots_and_threads(served: LiveServer) -> None:
    with served.http() as http:
        settings = http.get("/api/status").json()["settings"]

    assert (settings["n_ctx"], settings["n_parallel"]) == (512, 2)


def test_load_ps_stop_round_trip(served: LiveServer) -> None:
    code, out, _ = _cli(served, "ps")
    assert code == 0 and "No model is loaded" in out

    code, out, err = _cli(served, "load", MODEL)
    assert code == 0, err
    assert f"Loaded {MODEL}" in out

    code, out, err = _cli(served, "ps")
    assert code == 0, err
    row = next(line for line in lines_of(out) if line.split()[:1] == [MODEL])
    assert "MiB" in row and "512" in row  # memory and the --ctx the server runs with
    assert "min" in row or " s" in row  # when it unloads (keep-alive countdown)
    assert all(len(line) <= COLUMNS for line in lines_of(out))

    code, out, _ = _cli(served, "ps", "--json")
    loaded = json.loads(out)["models"]
    assert [m["id"] for m in loaded] == [MODEL] and loaded[0]["memory_bytes"] > 0
    assert 0 < loaded[0]["expires_in_s"] <= 300

    code, out, _ = _cli(served, "stop", MODEL)
    assert code == 0 and f"{MODEL} was unloaded" in out
    code, out, _ = _cli(served, "unload", MODEL)
    assert code == 0 and f"{MODEL} was not loaded" in out
    assert "No model is loaded" in _cli(served, "ps")[1]


def test_load_of_an_unknown_model_exits_1_with_the_servers_advice(served: LiveServer) -> None:
    code, _, err = _cli(served, "load", "no-such-model")

    assert code == 1 and "no-such-model" in err and "localloom models" in err


def test_without_a_server_ps_says_how_to_start_one() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = Path(__import__("os").environ["LOCALLOOM_HOME"]) / "config" / "server-token"
    token.parent.mkdir(parents=True)
    token.write_text("x" * 43)

    for command in (["ps"], ["load", MODEL], ["stop", MODEL]):
        result = localloom(*command, "--port", str(port))
        assert result.returncode == 1
        assert "No LocalLoom server is running" in result.stderr
        assert f"`localloom serve --port {port}`" in result.stderr
        assert "Traceback" not in result.stderr


def test_show_reads_the_model_offline(served: LiveServer, tiny_gguf: Path) -> None:
    env = {"LOCALLOOM_HOME": str(served.home), "LOCALLOOM_OFFLINE": "1"}
    result = localloom("show", MODEL, env=env)

    assert result.returncode == 0, result.stderr
    for fact in ("architecture  llama", "context       2048", "license", str(tiny_gguf),
                 "chat template 198 characters"):
        assert fact in result.stdout, (fact, result.stdout)
    capabilities = next(line for line in lines_of(result.stdout) if "capabilities" in line)
    assert "chat" in capabilities and "completion" in capabilities

    facts = json.loads(localloom("show", MODEL, "--json", env=env).stdout)
    assert facts["architecture"] == "llama" and facts["path"] == str(tiny_gguf)
    assert "chat" in facts["capabilities"] and "im_start" in facts["chat_template"]
    template = localloom("show", MODEL, "--template", env=env).stdout
    assert facts["chat_template"].splitlines()[0] in template


def test_show_of_a_model_not_downloaded_names_the_pull_command() -> None:
    result = localloom("show", "Qwen2.5-0.5B-Instruct-Q4_K_M")

    assert result.returncode == 0, result.stderr
    assert "`localloom pull Qwen2.5-0.5B-Instruct-Q4_K_M`" in result.stdout
    assert "Apache-2.0" in result.stdout
