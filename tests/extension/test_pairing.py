"""Pairing: a browser extension gets a scoped, revocable token for its own origin only."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from localloom.cli import app as cli_app
from localloom.server.pairing import PAIRINGS_FILE_NAME
from server.server_harness import MODEL, LiveServer, read_events, start_server

EXT = "chrome-extension://eldlknbhjpojdfecipeiaeaafngnclln"
OTHER_EXT = "chrome-extension://peibehojiknlpceaniiaadkdfdnmeema"
FIREFOX = "moz-extension://0f5a2c1e-7d3b-4c8e-9a61-2b4f6d8e0a13"


@pytest.fixture(scope="module")
def live(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("serve"), tiny_gguf)
    yield server
    server.stop()


def cli(live: LiveServer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_app, list(args), env={"LOCALLOOM_HOME": str(live.home)})
    return result.exit_code, result.output


def pair(live: LiveServer, origin: str = EXT, *extra: str) -> str:
    code, out = cli(live, "pair", origin, *extra)
    assert code == 0, out
    return out.strip().splitlines()[-1]


def ext_client(live: LiveServer, token: str, origin: str = EXT) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=60, headers={
        "Authorization": f"Bearer {token}", "Origin": origin})


def test_pair_prints_a_token_that_runs_tasks_and_saves_history_from_that_origin_only(
        live: LiveServer) -> None:
    token = pair(live)
    assert token.startswith("llx_")
    with ext_client(live, token) as http:
        listed = http.get("/api/tasks")
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == EXT
        with http.stream("POST", "/api/tasks/summarize",
                         json={"text": "Some words to summarize.", "model": MODEL,
                               "max_tokens": 4}) as r:
            assert r.status_code == 200
            events = [e for e, _ in read_events(r.iter_lines())]
        assert events[-1] == "done"
        saved = http.post("/api/history", json={
            "task": "summarize", "model": MODEL, "original": "Some words.", "result": "Words.",
            "source_url": "http://127.0.0.1:1/page", "source_title": "A page"})
        assert saved.status_code == 201, saved.text
        assert http.get(f"/api/history/{saved.json()['id']}").json()["source_title"] == "A page"
        assert http.get("/api/models").status_code == 200
    # The token from any other allowed origin (the server's own page) is refused.
    with httpx.Client(base_url=live.base_url, headers={"Authorization": f"Bearer {token}",
                                                       "Origin": live.base_url.rstrip("/")}) as h:
        r = h.get("/api/tasks")
        assert r.status_code == 403
        assert EXT in r.json()["error"]["message"]


def test_a_saved_result_with_an_impossible_token_count_is_a_400(live: LiveServer) -> None:
    # schemathesis found a 500: a count over SQLite's 64-bit integers.
    body = {"task": "summarize", "model": MODEL, "original": "Some words.", "result": "Words.",
            "completion_tokens": 10**22}
    with live.http() as http:
        r = http.post("/api/history", json=body)
        assert r.status_code == 400, r.text
        assert "completion_tokens" in r.json()["error"]["message"]
        assert http.post("/api/history", json={**body, "completion_tokens": 7}).status_code == 201


def test_a_preflight_from_the_paired_origin_is_answered(live: LiveServer) -> None:
    pair(live)
    with httpx.Client(base_url=live.base_url) as http:
        r = http.options("/api/tasks/summarize", headers={
            "Origin": EXT, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == EXT


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/api/models/tiny"), ("POST", "/api/models/tiny/unload"),
    ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/api/pairings"),
    ("POST", "/api/pairings"), ("POST", "/api/models/tiny/pull"), ("GET", "/openapi.json")])
def test_the_scoped_token_cannot_delete_models_change_settings_or_pull(
        live: LiveServer, method: str, path: str) -> None:
    token = pair(live)
    with ext_client(live, token) as http:
        r = http.request(method, path, json={} if method == "POST" else None)
    assert r.status_code == 403, (path, r.text)
    message = r.json()["error"]["message"]
    assert ("localloom pair" in message and "--allow-pull" in message) if path.endswith(
        "/pull") else "may not call" in message


def test_allow_pull_lets_the_extension_download(live: LiveServer) -> None:
    token = pair(live, EXT, "--allow-pull")
    with ext_client(live, token) as http:
        r = http.post("/api/models/no-such-model/pull")
    assert r.status_code == 404  # past the scope check: the catalog answers
    pair(live)  # back to the default scopes for the other tests


def test_an_extension_that_was_never_paired_gets_403_everywhere(live: LiveServer) -> None:
    pair(live)
    with httpx.Client(base_url=live.base_url, headers={"Origin": OTHER_EXT}) as http:
        assert http.get("/health").status_code == 403
        r = http.get("/api/tasks", headers={"Authorization": f"Bearer {live.token}"})
        assert r.status_code == 403
        assert "not allowed" in r.json()["error"]["message"]


def test_another_extensions_token_is_refused_from_this_origin(live: LiveServer) -> None:
    pair(live)
    other = pair(live, FIREFOX)
    with ext_client(live, other, origin=EXT) as http:
        assert http.get("/api/tasks").status_code == 403
    cli(live, "tokens", "revoke", FIREFOX)


def test_revoked_token_gets_403_and_its_origin_leaves_the_allowlist(live: LiveServer) -> None:
    token = pair(live)
    code, listing = cli(live, "tokens", "list", "--json")
    entry = next(p for p in json.loads(listing) if p["origin"] == EXT)
    with ext_client(live, token) as http:
        assert http.get("/api/tasks").status_code == 200
        code, out = cli(live, "tokens", "revoke", entry["id"])
        assert code == 0 and "Revoked" in out
        r = http.get("/api/tasks")
        assert r.status_code == 403
        assert http.get("/health").status_code == 403
    code, listing = cli(live, "tokens", "list", "--json")
    assert EXT not in listing
    code, out = cli(live, "tokens", "revoke", entry["id"])
    assert code == 1


def test_pairings_are_stored_hashed_in_a_private_file(live: LiveServer) -> None:
    token = pair(live)
    path = live.home / "config" / PAIRINGS_FILE_NAME
    text = path.read_text()
    assert token not in text and EXT in text
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("origin", ["https://evil.example", "chrome-extension://short",
                                    "null", "chrome-extension://*"])
def test_pairing_something_that_is_not_an_extension_origin_says_what_to_pair(
        live: LiveServer, origin: str) -> None:
    code, out = cli(live, "pair", origin)
    assert code == 1
    assert "chrome-extension://<32 letters a-p>" in out


def test_the_web_ui_pairs_and_revokes_with_the_server_token(live: LiveServer) -> None:
    with live.http() as http:
        r = http.post("/api/pairings", json={"origin": FIREFOX})
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["origin"] == FIREFOX and created["token"].startswith("llx_")
        assert FIREFOX in {p["origin"] for p in http.get("/api/pairings").json()["pairings"]}
        with ext_client(live, created["token"], origin=FIREFOX) as ext_http:
            assert ext_http.get("/api/tasks").status_code == 200
            assert http.delete(f"/api/pairings/{created['id']}").status_code == 200
            assert ext_http.get("/api/tasks").status_code == 403
        assert http.delete("/api/pairings/nope").status_code == 404
        bad = http.post("/api/pairings", json={"origin": "https://evil.example"})
        assert bad.status_code == 400


def test_a_whole_page_task_uses_the_pages_main_text(live: LiveServer) -> None:
    token = pair(live)
    article = " ".join(["The harbour town grew around its old stone bridge."] * 12)
    html = (f"<html><head><title>T</title></head><body><nav>Home | Login | Shop</nav>"
            f"<article><h1>Harbour</h1><p>{article}</p></article></body></html>")
    with ext_client(live, token) as http, http.stream(
            "POST", "/api/tasks/summarize",
            json={"html": html, "url": "http://127.0.0.1:1/a", "model": MODEL,
                  "max_tokens": 4}) as r:
        assert r.status_code == 200
        done = next(json.loads(d) for e, d in read_events(r.iter_lines()) if e == "done")
    assert "old stone bridge" in done["original"]
    assert "Login | Shop" not in done["original"]


def test_a_task_needs_exactly_one_of_text_and_html(live: LiveServer) -> None:
    with live.http() as http:
        both = http.post("/api/tasks/summarize", json={"text": "a", "html": "<p>a</p>"})
        neither = http.post("/api/tasks/summarize", json={})
    assert both.status_code == neither.status_code == 400
    assert "exactly one of 'text'" in both.text


def test_without_allow_pull_the_extension_cannot_make_the_server_download_a_model(
        live: LiveServer) -> None:
    token = pair(live)
    with ext_client(live, token) as http:
        load = http.post("/api/models/starter/load")
        task = http.post("/api/tasks/summarize", json={"text": "Some words.",
                                                       "model": "starter"})
        for r in (load, task):
            assert r.status_code == 403, r.text
            message = r.json()["error"]["message"]
            assert "not downloaded" in message and "--allow-pull" in message
        # A model already on disk loads as usual.
        with http.stream("POST", f"/api/models/{MODEL}/load") as r:
            assert r.status_code == 200
            assert [e for e, _ in read_events(r.iter_lines())][-1] == "done"


def test_an_extension_reads_what_its_own_pairing_allows_and_the_server_token_has_none(
        live: LiveServer) -> None:
    with ext_client(live, pair(live, FIREFOX), FIREFOX) as http:
        own = http.get("/api/pairing").json()["pairing"]
    assert own["origin"] == FIREFOX and "pull" not in own["scopes"]
    assert "token_hash" not in own
    with ext_client(live, pair(live, FIREFOX, "--allow-pull"), FIREFOX) as http:
        assert "pull" in http.get("/api/pairing").json()["pairing"]["scopes"]
    with live.http() as http:
        assert http.get("/api/pairing").json() == {"pairing": None}
