"""The client examples in the README's "Server" section run against a live server.

Each fenced block is taken from README.md as written (the openai SDK, LangChain and curl
examples) and run as is, with three substitutions a test needs: the server's real address
for ``http://127.0.0.1:8765``, its token file for ``TOKEN_FILE`` and the test model for
``"starter"``. A README edit that breaks an example fails here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from server_harness import MODEL, LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_README_URL = "http://127.0.0.1:8765"
_CHAT_200 = '"POST /v1/chat/completions HTTP/1.1" 200'


def _snippet(marker: str) -> tuple[str, str]:
    """(language, code) of the block containing ``marker`` in the Server section's opening
    part (before its first subsection, whose examples other client tests cover)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Server\n")
    end = text.find("\n##", start + 1)
    section = text[start:end if end != -1 else len(text)]
    blocks = [(lang, code) for lang, code in _FENCE.findall(section) if marker in code]
    if len(blocks) != 1:
        pytest.fail(f"README.md's Server section needs exactly one example containing "
                    f"{marker!r}; it has {len(blocks)}.")
    return blocks[0]


def _for_test(code: str, server: LiveServer) -> str:
    assert _README_URL in code and '"starter"' in code, code
    return code.replace(_README_URL, server.base_url.rstrip("/")).replace('"starter"',
                                                                          f'"{MODEL}"')


def _token_file(server: LiveServer) -> Path:
    path = server.home / "config" / "server-token"
    assert path.read_text(encoding="utf-8").strip() == server.token
    return path


def _run_python(code: str, server: LiveServer) -> str:
    """Run a README Python block; returns what it printed."""
    served = server.logs().count(_CHAT_200)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"TOKEN_FILE": str(_token_file(server))})
    _wait_for_chats(server, served + 1)
    return out.getvalue()


def _wait_for_chats(server: LiveServer, count: int) -> None:
    """The access log (read by another thread) shows ``count`` answered chat requests."""
    deadline = time.monotonic() + 10
    while server.logs().count(_CHAT_200) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.logs().count(_CHAT_200) == count, "the example got no chat completion"


def test_readme_openai_sdk_example_runs(server: LiveServer) -> None:
    lang, code = _snippet("from openai import OpenAI")
    assert lang == "python"
    _run_python(_for_test(code, server), server)


def test_readme_langchain_example_runs(server: LiveServer) -> None:
    lang, code = _snippet("from langchain_openai import ChatOpenAI")
    assert lang == "python"
    printed = _run_python(_for_test(code, server), server)
    assert printed.endswith("\n")  # it printed the answer


def test_readme_curl_example_runs(server: LiveServer) -> None:
    lang, code = _snippet("curl ")
    assert lang in ("bash", "sh", "shell")
    served = server.logs().count(_CHAT_200)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", _for_test(code, server)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TOKEN_FILE": str(_token_file(server))})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["object"] == "chat.completion", answer
    assert answer["model"] == MODEL
    assert isinstance(answer["choices"][0]["message"]["content"], str)
    _wait_for_chats(server, served + 1)
