"""Shared parts of the hostile-web-page and overload tests: a live server, raw HTTP, the figures.

The server is the real ``python -m localloom serve --port 0`` of ``tests/server``'s harness,
started with a Hub address that refuses connections, so no test reaches the internet even if
it asks the server for a catalog model. ``raw_http`` sends bytes the way an attacker can
(absolute-form request lines, repeated or empty ``Host`` headers) and reads the answer.

Example::

    live = start_isolated(tmp_path / "serve", tiny_gguf, {"LOCALLOOM_N_PARALLEL": "2"})
    reply = raw_http(live.port, b"GET /health HTTP/1.1\\r\\nHost: evil.example\\r\\n\\r\\n")
    assert reply.status == 403
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from reliability_figures import Row, Section

from server.server_harness import LiveServer, start_server

__all__ = [
    "OVERLOAD",
    "OVERLOAD_ROWS",
    "WEB",
    "WEB_ROWS",
    "RawReply",
    "raw_http",
    "rss_mib",
    "start_isolated",
]

OFFLINE_ENV = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",
               "LOCALLOOM_OFFLINE": "1"}


def start_isolated(home: Path, model: Path, env: Mapping[str, str] | None = None
                   ) -> LiveServer:
    """``localloom serve`` on 127.0.0.1 with its own home, the tiny model and no Hub."""
    home.mkdir(parents=True, exist_ok=True)
    return start_server(home, model, env={**OFFLINE_ENV, **(env or {})})


def rss_mib(live: LiveServer) -> float:
    """Resident memory of the server process, MiB."""
    rss: int = psutil.Process(live.process.pid).memory_info().rss
    return rss / (1 << 20)


@dataclass(frozen=True)
class RawReply:
    """Status line, headers (lower-case names) and body of one raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """One header's value, or None."""
        return self.headers.get(name.lower())


def raw_http(port: int, request: bytes, timeout: float = 30.0) -> RawReply:
    """Send ``request`` as is on a new connection and read the answer until the server closes.

    Requests should carry ``Connection: close``; a malformed one may get no status at all
    (status 0: the server dropped it).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return RawReply(status, headers, body)


# --------------------------------------------------------------------------- the figures

W_HOST = "DNS rebinding: a foreign, malformed or repeated Host"
W_TARGET = "Absolute-form request line naming another host"
W_SIMPLE = "Cross-site simple requests (text/plain, forms, multipart, no-cors, frames)"
W_ORIGIN = "`Origin: null` and foreign origins on every route"
W_PREFLIGHT = "CORS preflights from other origins"
W_QUERY = "Token in query strings, paths or logs"
W_TIMING = "Timing of the token comparison"
W_BROWSER = "A hostile page in a real browser (headless Chromium)"

WEB_ROWS = (
    Row(W_HOST, "`Host` must be one of localhost, 127.0.0.1, [::1] (or configured names), sent "
        "exactly once; checked before routing, even with a valid token",
        "`tests/adversarial/test_web_attacks.py::test_hostile_requests_are_all_refused`; "
        "`tests/server/test_security.py::test_foreign_host_header_is_403_even_with_the_token`"),
    Row(W_TARGET, "the authority of `GET http://host/path` replaces `Host` (RFC 9112 3.2.2) and "
        "must be allowed too; the HTTP protocol keeps the raw target for the check",
        "`test_hostile_requests_are_all_refused`"),
    Row(W_SIMPLE, "`Origin` checked on every request; unsafe methods take JSON or nothing (415); "
        "subresource requests and frames started by other pages refused by `Sec-Fetch-*`; "
        "no cookie is a credential (a 127.0.0.1 cookie reaches every port)",
        "`test_hostile_requests_are_all_refused`; "
        "`tests/server/test_security.py::test_cross_site_text_plain_post_is_refused`, "
        "`::test_subresource_requests_started_by_other_pages_are_refused`"),
    Row(W_ORIGIN, "only the server's own origin and configured ones (never `*`, never `null`)",
        "`test_hostile_requests_are_all_refused`; "
        "`tests/server/test_security.py::test_foreign_origin_is_403_and_gets_no_cors_header`"),
    Row(W_PREFLIGHT, "preflights answered by the security layer: 403 and no `Access-Control-*` "
        "header for any origin not allowed",
        "`test_hostile_requests_are_all_refused`; "
        "`tests/server/test_security.py::test_preflight_from_a_foreign_origin_is_refused`"),
    Row(W_QUERY, "the token is accepted only as a bearer header (`GET /?token=` redirects "
        "to the `#token=` fragment the UI reads); every log line is filtered for the token",
        "`test_hostile_requests_are_all_refused`, `test_token_stays_out_of_every_log_line`; "
        "`tests/server/test_security.py::test_token_never_appears_in_the_logs`"),
    Row(W_TIMING, "`hmac.compare_digest` on bytes, whatever the length",
        "`test_token_comparison_goes_through_compare_digest`, "
        "`test_token_timing_does_not_depend_on_a_right_prefix`"),
    Row(W_BROWSER, "all of the above, seen through Chromium's own CORS, cookie and "
        "`Sec-Fetch-*` behaviour; the browser is signed in (the token in the UI tab's "
        "sessionStorage)",
        "`test_hostile_pages_in_chromium_get_nothing`; "
        "`tests/server/test_web_ui.py::test_a_hostile_page_in_the_signed_in_browser_gets_nothing`"),
)

WEB = Section(
    "web", "## Hostile web pages",
    "Every web page the user opens can send requests to 127.0.0.1. The server refuses them "
    "before routing (`src/localloom/server/security.py`): Host allowlist, Origin allowlist, "
    "`Sec-Fetch-*`, JSON-only unsafe methods, and a token that only a bearer header or the "
    "sign-in cookie carried before issue 11 (now only the bearer header). "
    "`tests/adversarial/test_web_attacks.py` sends every attack to a "
    "real `localloom serve` over raw sockets (with the token, and a cookie holding it, where "
    "that is the worse case) and from a real headless Chromium; refused = a 4xx refusal "
    "(400, 401, 403, 415) without CORS headers, or stopped by the browser, and nothing "
    "readable by the page. `pytest -m slow tests/adversarial/test_web_attacks.py` reruns the "
    "full set and rewrites this table.",
    WEB_ROWS)

O_QUEUE = "More clients than the queue holds"
O_FLOOD = "A flood of clients beyond the in-flight limit"
O_DROP = "Clients that disconnect mid-stream or while queued"
O_PARAMS = "Invalid parameters of every type in chat and text completions"
O_BODY = "Oversized, malformed or hostile request bodies"
O_FUZZ = "Schemathesis over the server's OpenAPI schema"
O_SIGTERM = "SIGTERM with 8 streams in flight"

OVERLOAD_ROWS = (
    Row(O_QUEUE, "the scheduler admits `n_parallel` sequences and `max_queue` waiters; the "
        "rest get 503 `server_busy` with `Retry-After` at once",
        "`tests/adversarial/test_overload_faults.py::test_clients_beyond_the_queue_get_a_fast_503_and_"
        "the_queued_work_completes`; `tests/server/test_overload.py::test_full_queue_answers_"
        "503_with_retry_after_at_once`"),
    Row(O_FLOOD, "requests in flight capped in the app (JSON 503 + `Retry-After`); uvicorn's "
        "plain-text 503 only beyond the open-file budget",
        "`test_a_flood_of_clients_gets_json_503s_and_memory_stays_bounded`"),
    Row(O_DROP, "a disconnect cancels the request's task and closes its engine stream, which "
        "frees the decode slot or the queue place",
        "`test_dropped_clients_free_their_slots_and_queue_places_at_once`; "
        "`tests/server/test_overload.py::test_dropped_stream_frees_the_slot_within_a_second`"),
    Row(O_PARAMS, "pydantic request models with ranges; engine checks (context, vocabulary, n); "
        "the server rejects lone surrogates and unbounded JSON-schema repetitions before the "
        "engine sees them; error bodies render any text",
        "`test_invalid_parameters_get_400_never_500`"),
    Row(O_BODY, "16 MiB body limit answered in OpenAI's JSON (413, also for chunked bodies); "
        "JSON parse errors, deep nesting and bad UTF-8 are 400",
        "`test_hostile_bodies_get_a_json_4xx`"),
    Row(O_FUZZ, "all of the above", "`tests/adversarial/test_schemathesis.py`"),
    Row(O_SIGTERM, "SIGTERM starts the drain: new requests are refused (503, or no listener "
        "once uvicorn has closed it), running streams get `drain_timeout` seconds, then an "
        "error event; the process exits 0",
        "`test_sigterm_with_8_streams_ends_each_cleanly_and_exits_0`; "
        "`tests/server/test_overload.py::test_sigterm_finishes_short_streams_cuts_long_ones_and_"
        "exits_cleanly`"),
)

OVERLOAD = Section(
    "overload", "## Overload and faults",
    "A local server shares the machine with its user: too many clients, clients that walk "
    "away, malformed input and shutdowns must cost neither the process nor its memory. "
    "`tests/adversarial/test_overload_faults.py` and `test_schemathesis.py` drive a real "
    "`localloom serve` with the tiny model (2 decode slots and 4 queue places where the "
    "queue matters); memory is the server's RSS (psutil). `pytest -m slow "
    "tests/adversarial/test_overload_faults.py tests/adversarial/test_schemathesis.py` "
    "reruns the long variants and rewrites this table. "
    "SIGKILL of the history database and SIGTERM during a download are in their own sections.",
    OVERLOAD_ROWS)
