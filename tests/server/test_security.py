"""The server answers only its owner: token, Host, Origin and content-type checks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from server_harness import MODEL, LiveServer, start_server

EVIL = "https://evil.example"
EXTENSION = "chrome-extension://abcdefghijklmnop"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def test_requests_without_token_or_with_a_wrong_one_get_401(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        for method, path in (("GET", "/v1/models"), ("GET", "/api/models"), ("GET", "/api/ps"),
                             ("GET", "/metrics"), ("GET", "/api/status"),
                             ("POST", "/api/models/tiny/load"), ("GET", "/openapi.json")):
            assert http.request(method, path).status_code == 401, path
            wrong = http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
        r = http.post("/v1/chat/completions", json=CHAT,
                      headers={"Authorization": "Bearer " + server.token[:-1] + "x"})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"


def test_openai_client_with_a_bad_token_raises_authentication_error(server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        server.client(token="not-the-token").models.list()


def test_non_ascii_token_is_refused_not_crashed(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        r = http.get("/v1/models", headers={"Authorization": "Bearer caf\xe9".encode("latin-1")})
        assert r.status_code == 401


def test_health_is_public_and_says_nothing_about_models(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        r = http.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_token_in_a_query_string_does_not_open_the_api(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        assert http.get(f"/v1/models?token={server.token}").status_code == 401


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "[::2]:1234"])
def test_foreign_host_header_is_403_even_with_the_token(server: LiveServer, host: str) -> None:
    with server.http() as http:
        for path in ("/v1/models", "/health", "/"):
            r = http.get(path, headers={"Host": host})
            assert r.status_code == 403, (host, path)


def test_loopback_names_with_any_port_are_accepted(server: LiveServer) -> None:
    with server.http() as http:
        for host in ("localhost", "127.0.0.1", "[::1]", f"localhost:{server.port}",
                     "LOCALHOST:1"):
            assert http.get("/v1/models", headers={"Host": host}).status_code == 200, host


def test_foreign_origin_is_403_and_gets_no_cors_header(server: LiveServer) -> None:
    with server.http() as http:
        for origin in (EVIL, "null", "http://localhost:1", f"http://127.0.0.1:{server.port}.evil"):
            r = http.post("/v1/chat/completions", json=CHAT, headers={"Origin": origin})
            assert r.status_code == 403, origin
            assert "access-control-allow-origin" not in r.headers
            r = http.get("/v1/models", headers={"Origin": origin})
            assert r.status_code == 403, origin
            assert "access-control-allow-origin" not in r.headers


def test_preflight_from_a_foreign_origin_is_refused(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        r = http.options("/v1/chat/completions", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 403
    assert not any(h.startswith("access-control-") for h in r.headers)


def test_configured_extension_origin_gets_its_own_origin_back(server: LiveServer) -> None:
    with server.http(auth=False) as http:
        pre = http.options("/v1/chat/completions", headers={
            "Origin": EXTENSION, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == EXTENSION
    assert "authorization" in pre.headers["access-control-allow-headers"].lower()
    with server.http() as http:
        r = http.get("/v1/models", headers={"Origin": EXTENSION})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == EXTENSION
    assert r.headers["access-control-allow-origin"] != "*"


def test_same_origin_requests_from_the_ui_are_allowed(server: LiveServer) -> None:
    with server.http() as http:
        r = http.get("/api/models", headers={"Origin": server.base_url.rstrip("/")})
    assert r.status_code == 200


def test_cross_site_text_plain_post_is_refused(server: LiveServer) -> None:
    body = '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}'
    with server.http() as http:
        # What a page's <form enctype="text/plain"> or no-cors fetch() sends.
        r = http.post("/v1/chat/completions", content=body,
                      headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert r.status_code == 403
        # Even without an Origin header (and with the token), JSON endpoints want JSON.
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            r = http.post("/v1/chat/completions", content=body, headers={"Content-Type": ctype})
            assert r.status_code == 415, ctype
            r = http.post("/api/models/tiny/load", content=b"", headers={"Content-Type": ctype})
            assert r.status_code == 415, ctype


def test_the_sign_in_url_keeps_the_token_in_its_fragment_and_no_cookie_is_set(
        server: LiveServer) -> None:
    assert "#token=" in server.sign_in_url and "?" not in server.sign_in_url
    with httpx.Client(timeout=30) as browser:
        page = browser.get(server.base_url)  # the page itself holds no data: public
        assert page.status_code == 200 and 'id="model-select"' in page.text
        assert "set-cookie" not in page.headers
        assert browser.get(server.base_url + "api/models").status_code == 401  # its API is not
        # An older ?token= link goes to the fragment form, setting nothing.
        r = browser.get(server.base_url + f"?token={server.token}&x=1", follow_redirects=False)
        assert r.status_code == 303 and "set-cookie" not in r.headers
        assert r.headers["location"] == f"/?x=1#token={server.token}"
        # A cookie holding the token is not a credential.
        r = browser.get(server.base_url + "api/models",
                        headers={"Cookie": f"localloom-token-{server.port}={server.token}"})
        assert r.status_code == 401
    with httpx.Client(timeout=30) as stranger:
        r = stranger.get(server.base_url + "?token=wrong", follow_redirects=False)
        assert r.status_code == 401
        assert "set-cookie" not in r.headers


def test_token_file_is_created_private(server: LiveServer) -> None:
    path = server.home / "config" / "server-token"
    assert path.read_text().strip() == server.token
    if os.name != "nt":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_never_appears_in_the_logs(server: LiveServer) -> None:
    with httpx.Client(timeout=30) as browser:
        browser.get(server.sign_in_url)
        browser.get(server.base_url + f"?token={server.token}&x=1")
    with server.http() as http:
        http.get("/v1/models")
        http.get(f"/v1/models?token={server.token}")
    logs = server.logs()
    assert "GET /?token=[redacted]" in logs
    assert server.token not in logs
    assert server.token[:16] not in logs


def test_non_loopback_bind_needs_allow_remote(fresh_home: Path, tiny_gguf: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "localloom", "serve", "--host", "0.0.0.0", "--port", "0"],
        env={**os.environ, "LOCALLOOM_HOME": str(fresh_home)}, capture_output=True, text=True,
        timeout=120)
    assert refused.returncode == 1
    assert "--allow-remote" in refused.stderr
    live = start_server(fresh_home, tiny_gguf, args=("--host", "0.0.0.0", "--allow-remote"))
    try:
        with live.http(auth=False) as http:
            assert http.get("/v1/models").status_code == 401  # still needs the token
        with live.http() as http:
            assert http.get("/v1/models").status_code == 200
    finally:
        assert live.stop() == 0


def test_subresource_requests_started_by_other_pages_are_refused(server: LiveServer) -> None:
    # What <img src> or a no-cors fetch() from another page on 127.0.0.1 sends: no Origin
    # (and, were the UI signed in by a cookie, that cookie: cookies ignore ports).
    with server.http() as http:
        for site in ("same-site", "cross-site"):
            r = http.get("/api/ps", headers={"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "no-cors"})
            assert r.status_code == 403, site
        ok = http.get("/api/ps", headers={"Sec-Fetch-Site": "same-origin",
                                          "Sec-Fetch-Mode": "cors"})
        assert ok.status_code == 200
        nav = http.get("/", headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"})
        assert nav.status_code == 200
