"""Ollama's ``options``: no field silently ignored (docs/OLLAMA.md has the table).

Each class is tested through the real ``ollama`` client (what apps send) and, for the
``X-LocalLoom-Ignored-Options`` header the client does not show, plain HTTP.
"""

from __future__ import annotations

import json

import ollama
import pytest
from server_harness import LiveServer

HI = [{"role": "user", "content": "Hi"}]


def _client(server: LiveServer) -> ollama.Client:
    return ollama.Client(host=server.base_url.rstrip("/"),
                         headers={"Authorization": f"Bearer {server.token}"})


def _loaded_ctx(server: LiveServer) -> int:
    _client(server).generate(model="tiny")  # load only
    ps = server.http().get("/api/ps").json()["models"]
    return int(next(m["context_length"] for m in ps if m["model"].startswith("tiny")))


def test_num_ctx_within_the_loaded_context_runs_and_over_it_fails_naming_it(
        server: LiveServer) -> None:
    client, loaded = _client(server), _loaded_ctx(server)
    answer = client.chat(model="tiny", messages=HI, options={"num_ctx": loaded,
                                                             "num_predict": 2})
    assert answer.done and answer.eval_count and answer.eval_count <= 2
    # 0 means unset, as Ollama reads it (omitempty).
    assert client.chat(model="tiny", messages=HI, options={"num_ctx": 0, "num_predict": 2}).done
    for call in (lambda: client.chat(model="tiny", messages=HI,
                                     options={"num_ctx": loaded + 1}),
                 lambda: client.generate(model="tiny", prompt="Hi",
                                         options={"num_ctx": loaded * 4}, stream=False),
                 lambda: client.generate(model="tiny", options={"num_ctx": loaded + 1})):
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 400
        assert "num_ctx" in err.value.error and str(loaded) in err.value.error
        assert "LOCALLOOM_N_CTX" in err.value.error


@pytest.mark.parametrize("stream", [False, True])
def test_load_hints_are_accepted_and_named_in_a_header(server: LiveServer,
                                                       stream: bool) -> None:
    options = {"num_thread": 1, "num_gpu": 0, "main_gpu": 0, "num_batch": 64,
               "use_mmap": True, "low_vram": False, "num_keep": 4, "penalize_newline": True,
               "num_predict": 2, "temperature": 0}
    # What the ollama client sends (it reads only the body): the request works.
    assert _client(server).chat(model="tiny", messages=HI, options=options).done
    reply = server.http().post("/api/chat", json={"model": "tiny", "messages": HI,
                                                  "options": options, "stream": stream})
    assert reply.status_code == 200
    assert json.loads(reply.text.splitlines()[-1])["done"]
    assert reply.headers["x-localloom-ignored-options"] == (
        "low_vram, main_gpu, num_batch, num_gpu, num_keep, num_thread, penalize_newline, "
        "use_mmap")


def test_applied_options_leave_no_header(server: LiveServer) -> None:
    reply = server.http().post("/api/generate", json={
        "model": "tiny", "prompt": "Hi", "stream": False,
        "options": {"num_predict": 2, "temperature": 0.5, "top_k": 5, "top_p": 0.9,
                    "min_p": 0.1, "seed": 3, "repeat_penalty": 1.1, "stop": ["\n\n"],
                    "presence_penalty": 0.1, "frequency_penalty": 0.1, "num_ctx": 64,
                    "mirostat": 0, "typical_p": 1.0, "tfs_z": 1, "repeat_last_n": 64}})
    assert reply.status_code == 200, reply.text
    assert "x-localloom-ignored-options" not in reply.headers


@pytest.mark.parametrize(("option", "value", "works"), [
    ("mirostat", 2, 0), ("typical_p", 0.7, 1.0), ("tfs_z", 0.95, 1),
    ("repeat_last_n", 128, 64)])
def test_a_sampler_localloom_lacks_is_refused_unless_off(server: LiveServer, option: str,
                                                         value: float, works: float) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        _client(server).chat(model="tiny", messages=HI, options={option: value})
    assert err.value.status_code == 400
    assert f"'{option}'" in err.value.error and f"send {works:g}" in err.value.error


def test_an_unknown_option_is_refused_everywhere(server: LiveServer) -> None:
    client = _client(server)
    for call in (lambda: client.chat(model="tiny", messages=HI, options={"rope_scale": 2}),
                 lambda: client.generate(model="tiny", prompt="x", options={"rope_scale": 2}),
                 lambda: client.embed(model="tiny", input="x", options={"rope_scale": 2})):
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 400 and "Unknown option 'rope_scale'" in err.value.error


def test_an_option_out_of_range_is_refused_before_the_model_loads(server: LiveServer) -> None:
    # The engine's typed request is built (and checked) before the model is leased.
    client = _client(server)
    client.generate(model="tiny", keep_alive=0)  # unload
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="tiny", messages=HI, options={"temperature": 9})
    assert err.value.status_code == 400
    assert "Invalid 'temperature'" in err.value.error and "<= 2" in err.value.error
    assert "tiny:latest" not in [m.model for m in client.ps().models]
