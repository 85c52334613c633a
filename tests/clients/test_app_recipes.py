"""What Open WebUI, Continue, Page Assist and Obsidian Copilot send, replayed live.

Each request body below is the one the app's source builds (quoted per test), sent as the app
sends it (its auth header, Page Assist's extension Origin), and each answer is read the way
the app reads it: the fields it uses are present and typed. Sources read (2026 snapshots):
open-webui backend/open_webui/routers/ollama.py and utils/payload.py
(convert_payload_openai_to_ollama), continuedev/continue core/llm/llms/Ollama.ts,
n4ze3m/page-assist src/models/ChatOllama.ts, src/models/utils/ollama.ts, src/services/ollama.ts,
logancyang/obsidian-copilot src/LLMProviders/chatModelManager.ts.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import httpx
import pytest
from server_harness import LiveServer

from conftest import TOOLS_MODEL

PAGE_ASSIST = "chrome-extension://" + "p" * 32


def _lines(reply: httpx.Response) -> list[dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    lines = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
    assert lines and not any("error" in line for line in lines), reply.text
    return lines


def _ollama_usage(done: dict[str, Any]) -> None:
    """The final line's counts and timings, which all three apps read as integers."""
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration"):
        assert isinstance(done[key], int), key
    assert done["done"] is True and isinstance(done["done_reason"], str)


def _chat_stream(lines: list[dict[str, Any]]) -> str:
    """Open WebUI/Continue/Page Assist: every line a model name and an assistant message."""
    for line in lines:
        assert isinstance(line["model"], str) and isinstance(line["created_at"], str)
        assert line["message"]["role"] == "assistant"
        assert isinstance(line["message"]["content"], str)
    _ollama_usage(lines[-1])
    assert not any(line["done"] for line in lines[:-1])
    return "".join(line["message"]["content"] for line in lines)


# ------------------------------------------------------------------------- Open WebUI


def test_open_webui_connection_models_and_chat(server: LiveServer) -> None:
    # routers/ollama.py: verify_connection GETs /api/version with "Authorization: Bearer
    # <key>"; get_all_models GETs /api/tags (reads model["model"]) and /api/ps (name,
    # expires_at through datetime.fromisoformat); chats go to /api/chat with ":latest" added.
    with server.http() as http:
        assert isinstance(http.get("/api/version").json()["version"], str)
        models = http.get("/api/tags").json()["models"]
        assert "tiny:latest" in [m["model"] for m in models]
        assert all(isinstance(m["name"], str) and isinstance(m["size"], int) for m in models)
        # utils/payload.py convert_payload_openai_to_ollama: options from the model's
        # params, keep_alive lifted to the top level, stop into options.
        body = {"model": "tiny:latest", "stream": True, "keep_alive": "5m",
                "messages": [{"role": "system", "content": "You are a helpful assistant."},
                             {"role": "user", "content": "Hello"}],
                "options": {"temperature": 0.8, "top_p": 0.9, "top_k": 40, "seed": 42,
                            "num_predict": 8, "repeat_penalty": 1.1, "stop": ["<|end|>"]}}
        assert _chat_stream(_lines(http.post("/api/chat", json=body)))
        for model in http.get("/api/ps").json()["models"]:
            assert isinstance(model["name"], str)
            datetime.fromisoformat(model["expires_at"])


def test_open_webui_title_task_with_top_level_num_predict_and_system(
        server: LiveServer) -> None:
    # convert_payload_openai_to_ollama puts max_tokens at the top level as num_predict, and an
    # options "system" at the top level (Ollama drops both unread; LocalLoom applies them).
    body = {"model": "tiny:latest", "stream": False, "num_predict": 3,
            "system": "Answer with a title.",
            "messages": [{"role": "user", "content": "Generate a title for: hello"}],
            "options": {"temperature": 0}}
    reply = server.http().post("/api/chat", json=body)
    assert reply.status_code == 200, reply.text
    done = reply.json()
    _ollama_usage(done)
    assert isinstance(done["message"]["content"], str) and done["eval_count"] <= 3


def test_open_webui_tool_history_with_openai_call_ids(server: LiveServer) -> None:
    # convert_messages_openai_to_ollama: an assistant's tool_calls keep the OpenAI "index"
    # and "id", arguments parsed to an object, content ""; a tool result keeps tool_call_id.
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}
    body = {"model": TOOLS_MODEL, "stream": True, "tools": [weather],
            "options": {"num_predict": 4, "temperature": 0},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"index": 0, "id": "call_abc", "function": {
                        "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "Sunny, 21 C", "tool_call_id": "call_abc"}]}
    assert isinstance(_chat_stream(_lines(server.http().post("/api/chat", json=body))), str)


# --------------------------------------------------------------------------- Continue


def _continue_headers(server: LiveServer) -> dict[str, str]:
    # Ollama.ts: {"Content-Type": "application/json"} plus, when apiKey is set,
    # "Authorization: Bearer <apiKey>".
    return {"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"}


def _continue_context(server: LiveServer) -> int:
    """Ollama.ts: POST /api/show {"name": model}; each ``parameters`` line matched by
    /^(\\S+)\\s+((?:".*")|\\S+)$/, num_ctx becoming the context length sent back."""
    reply = httpx.post(server.base_url + "api/show", json={"name": "tiny"},
                       headers=_continue_headers(server))
    assert reply.status_code == 200
    body = reply.json()
    assert isinstance(body["template"], str)  # ".Suffix" in it would mean FIM
    line_re = re.compile(r'^(\S+)\s+((?:".*")|\S+)$')
    params: dict[str, str] = {}
    for line in body["parameters"].split("\n"):
        match = line_re.match(line)
        assert match, line  # every line has the shape Continue parses
        params[match[1]] = match[2]
    return int(params["num_ctx"])


def test_continue_show_then_chat_with_the_context_it_read(server: LiveServer) -> None:
    num_ctx = _continue_context(server)
    names = httpx.get(server.base_url + "api/tags",
                      headers=_continue_headers(server)).json()["models"]
    assert "tiny:latest" in [m["name"] for m in names]  # listModels: data.models[].name
    # _streamChat: options from _getModelFileParams (undefined ones dropped by
    # JSON.stringify), keep_alive 1800 s, stream true.
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
            "options": {"temperature": 0, "num_predict": 8, "stop": ["\n\n"],
                        "num_ctx": num_ctx},
            "keep_alive": 60 * 30, "stream": True}
    reply = httpx.post(server.base_url + "api/chat", json=body,
                       headers=_continue_headers(server), timeout=60)
    assert isinstance(_chat_stream(_lines(reply)), str)


def test_continue_autocomplete_is_a_raw_generate(server: LiveServer) -> None:
    # No ".Suffix" in the template: Continue renders the prompt itself and sends raw: true
    # (_getGenerateOptions; suffix left undefined).
    body = {"model": "tiny", "prompt": "def add(a, b):\n    return", "raw": True,
            "options": {"temperature": 0.01, "num_predict": 6, "stop": ["\n"],
                        "num_ctx": _continue_context(server)},
            "keep_alive": 60 * 30, "stream": True}
    lines = _lines(httpx.post(server.base_url + "api/generate", json=body,
                              headers=_continue_headers(server), timeout=60))
    assert all(isinstance(line["response"], str) for line in lines)
    _ollama_usage(lines[-1])


def test_continue_with_a_larger_configured_context_is_told_what_fits(
        server: LiveServer) -> None:
    # contextLength set in config.yaml (or /api/show unreachable: Ollama.ts's default 8192)
    # larger than the loaded context: a clear 400 in Ollama's shape, which Continue shows.
    num_ctx = _continue_context(server)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
            "options": {"num_ctx": num_ctx * 4}, "stream": True}
    reply = httpx.post(server.base_url + "api/chat", json=body,
                       headers=_continue_headers(server))
    assert reply.status_code == 400 and f"num_ctx <= {num_ctx}" in reply.json()["error"]


# ------------------------------------------------------------------------ Page Assist


@pytest.fixture(scope="module")
def page_assist(server: LiveServer) -> httpx.Client:
    """Page Assist paired as a browser extension: its Origin, and the pairing token as its
    "custom Ollama headers" (services/app.ts getCustomOllamaHeaders, added to every call)."""
    token = server.http().post("/api/pairings", json={"origin": PAGE_ASSIST}).json()["token"]
    return httpx.Client(base_url=server.base_url, timeout=60,
                        headers={"Origin": PAGE_ASSIST, "Authorization": f"Bearer {token}"})


def test_page_assist_checks_lists_and_chats(page_assist: httpx.Client) -> None:
    # services/ollama.ts: isOllamaRunning GETs the base URL (ok = running); getAllModels
    # GETs /api/tags (json.models[].name); the about page GETs /api/version.
    assert page_assist.get("/").is_success
    models = page_assist.get("/api/tags").json()["models"]
    assert "tiny:latest" in [m["name"] for m in models]
    assert isinstance(page_assist.get("/api/version").json()["version"], str)
    # ChatOllama.ts invocationParams (unset settings are undefined, so dropped) and
    # utils/ollama.ts createOllamaChatStream: "Content-Type: application/json".
    body = {"model": "tiny:latest", "keep_alive": "5m", "stream": True,
            "messages": [{"role": "system", "content": "You are Page Assist."},
                         {"role": "user", "content": "Summarize this page."}],
            "options": {"temperature": 0.7, "top_k": 40, "top_p": 0.9, "num_predict": 8,
                        "seed": 7, "num_thread": 2, "use_mmap": True}}
    reply = page_assist.post("/api/chat", json=body)
    assert _chat_stream(_lines(reply)) is not None
    assert reply.headers["x-localloom-ignored-options"] == "num_thread, use_mmap"


def test_page_assist_pull_without_permission_reads_as_an_error(
        page_assist: httpx.Client) -> None:
    # utils/pull-ollama.ts streams /api/pull; a refusal is Ollama's {"error": string}, the
    # field createOllamaStream and the pull UI show.
    reply = page_assist.post("/api/pull", json={"model": "tiny", "stream": True})
    assert reply.status_code == 403 and isinstance(reply.json()["error"], str)


def test_page_assist_default_cors_fix_origin_is_refused_with_a_way_out(
        server: LiveServer) -> None:
    # libs/runtime.ts urlRewriteRuntime: with "Automatic Ollama CORS Fix" on (the default,
    # services/app.ts getIsAutoCORSFix -> true) Chrome's Origin is rewritten to
    # "<protocol>//<hostname>" of the Ollama URL, port dropped: not LocalLoom's own origin
    # nor the paired extension's. docs/OLLAMA.md says to turn the fix off (or set the Custom
    # Origin URL to the extension's origin).
    reply = httpx.get(server.base_url + "api/tags",
                      headers={"Origin": "http://127.0.0.1",
                               "Authorization": f"Bearer {server.token}"})
    assert reply.status_code == 403
    message = reply.json()["error"]
    assert "Automatic Ollama CORS Fix" in message and "pair the extension" in message


# ------------------------------------------------------------------- Obsidian Copilot


def test_obsidian_copilot_default_num_ctx_is_refused_and_a_set_one_works(
        server: LiveServer) -> None:
    # logancyang/obsidian-copilot src/LLMProviders/chatModelManager.ts builds @langchain/ollama's
    # ChatOllama with headers {Authorization: `Bearer ${apiKey || "default-key"}`},
    # think: false (no REASONING capability), repeatPenalty 1.1 and
    # numCtx: customModel.numCtx ?? DEFAULT_OLLAMA_NUM_CTX (131072, src/constants.ts).
    headers = {"Authorization": f"Bearer {server.token}"}
    num_ctx = _continue_context(server)

    def body(ctx: int) -> dict[str, Any]:
        return {"model": "tiny", "stream": True, "think": False,
                "messages": [{"role": "user", "content": "Summarize my note."}],
                "options": {"num_ctx": ctx, "repeat_penalty": 1.1, "temperature": 0.1,
                            "num_predict": 6}}

    refused = httpx.post(server.base_url + "api/chat", json=body(131072), headers=headers)
    assert refused.status_code == 400
    assert f"num_ctx <= {num_ctx}" in refused.json()["error"]
    reply = httpx.post(server.base_url + "api/chat", json=body(num_ctx), headers=headers,
                       timeout=60)
    assert isinstance(_chat_stream(_lines(reply)), str)
