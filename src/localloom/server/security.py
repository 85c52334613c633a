"""Locks the server to the local user: token, Host and Origin allowlists, content types.

Any web page the user opens can send requests to 127.0.0.1, so every check is on by
default and runs before routing, in this order:

1. ``Host`` must name this machine (localhost, 127.0.0.1, [::1], or a configured name):
   defeats DNS rebinding (Ollama's CVE-2024-28224). Exactly one ``Host`` is accepted, and an
   absolute-form request line (``GET http://name/path``), whose authority replaces ``Host``
   (RFC 9112 3.2.2), must name this machine too.
2. ``Origin``, when present, must be this server's own origin or a configured one (such as
   ``chrome-extension://<id>``); ``Origin: null`` is refused. Preflights are answered here.
   Allowed cross origins get their own origin echoed, never ``*``. Subresource requests
   that another page started without an Origin (``Sec-Fetch-Site``), and frames another
   page tries to embed this server's pages in, are refused too.
3. Unsafe methods carry JSON or nothing: the content types a cross-site page may send
   without a preflight (``text/plain``, forms) get 415.
4. A token (random, created on first start, file mode 0600) is required as
   ``Authorization: Bearer <token>``, and only so: never as a cookie, because a browser
   sends a 127.0.0.1 cookie to every port of 127.0.0.1, so any other local program could
   collect it. The web UI gets the token once in the sign-in URL's fragment
   (``/#token=...``, never sent over the network), keeps it in the tab's sessionStorage
   (scoped to this origin, port included) and sends it as the header. ``GET /?token=`` (an
   older sign-in link) redirects to the fragment form. Public: ``/health`` and the UI's
   page, script and style sheet, which hold no data. Comparison is constant time.
5. A paired browser extension (:mod:`localloom.server.pairing`) has its own scoped token:
   its origin is allowed while the pairing lives, and its token is refused with any other
   ``Origin`` and outside its scopes (403). A web page cannot forge an ``Origin`` header,
   so another local port never gets the extension's rights.

Example::

    token = load_or_create_token(settings.config_dir)
    app.add_middleware(SecurityMiddleware, policy=SecurityPolicy.from_settings(settings, token))
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localloom._fs import write_atomic
from localloom.config import Settings, make_private_dir
from localloom.errors import ConfigError
from localloom.server.errors import error_body
from localloom.server.pairing import (
    PAIRING_SCOPE_KEY,
    Pairing,
    PairingStore,
    pull_refusal,
    scope_refusal,
)

__all__ = [
    "PUBLIC_PATHS",
    "REQUEST_TARGET_KEY",
    "TOKEN_FILE_NAME",
    "RedactTokenFilter",
    "SecurityMiddleware",
    "SecurityPolicy",
    "TruncateFilter",
    "is_loopback_host",
    "load_or_create_token",
    "redact",
]

logger = logging.getLogger("localloom.server")

TOKEN_FILE_NAME = "server-token"
PUBLIC_PATHS = frozenset({"/health"})
# The web UI's shell: static files with no data in them; the page asks for the token.
UI_PATHS = frozenset({"/", "/static/app.js", "/static/core.js", "/static/chat.js",
                      "/static/markdown.js", "/static/pair.js", "/static/style.css",
                      "/static/taskopts.js"})
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{32,256}$")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_QUERY_TOKEN_RE = re.compile(r"(?i)([?&;]token=)[^&;\s\"']*")
# Scope key where the HTTP protocol leaves a request line's raw target when it is not
# origin-form ("/path"); see localloom.server.runner.
REQUEST_TARGET_KEY = "localloom.request_target"
_LOAD_RE = re.compile(r"^/api/models/([^/]+)/load$")
# Ollama's routes: its clients read a refusal's ``error`` as a string, not OpenAI's object.
_OLLAMA_RE = re.compile(r"^/api/(chat|generate|embed|embeddings|tags|show|pull|delete|version"
                        r"|copy|create|push|blobs/[^/]+)$")
_FRAME_DESTS = frozenset({"iframe", "frame", "embed", "object", "fencedframe"})


# --------------------------------------------------------------------------- token file


def load_or_create_token(config_dir: Path) -> str:
    """Return the server token, creating it (mode 0600) on first start.

    Two servers starting at once agree on one token: the file is created with O_EXCL.
    """
    make_private_dir(config_dir)
    path = config_dir / TOKEN_FILE_NAME
    for _ in range(20):
        token = _read_token(path)
        if token is not None:
            _restrict_mode(path)
            return token
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            # Another process created it: give it time to write its token, then read again
            # (judging by size alone replaced a fresh token that landed in between).
            if _read_token(path) is None:
                time.sleep(0.05)
                if path.stat().st_size > 0 and _read_token(path) is None:
                    break  # written, and still not a token: replace it below
            continue  # the next pass returns the token, or waits some more
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        _restrict_mode(path)
        return token
    return _replace_token(path)


def _read_token(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the server token file {path}: {exc}. Fix its permissions or delete it "
            "(a new token is created on the next start)."
        ) from exc
    return text if _TOKEN_RE.match(text) else None


def _replace_token(path: Path) -> str:
    logger.warning("The server token file %s was not a valid token; writing a new one.", path)
    token = secrets.token_urlsafe(32)
    write_atomic(path, token + "\n", mode=0o600)
    _restrict_mode(path)
    return token


def _restrict_mode(path: Path) -> None:
    # Windows has no POSIX modes; the file lives in the user's profile, which is private.
    if os.name == "nt":
        return
    if path.stat().st_mode & 0o777 != 0o600:
        os.chmod(path, 0o600)


# --------------------------------------------------------------------------- logs


def redact(text: str, secrets_: Iterable[str] = ()) -> str:
    """Remove ``token=...`` query values and any known secret from a log line."""
    text = _QUERY_TOKEN_RE.sub(r"\1[redacted]", text)
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class RedactTokenFilter(logging.Filter):
    """Logging filter that keeps the token out of every log line (access log included).

    Attach it to handlers (``logging.config.dictConfig``: ``{"()": RedactTokenFilter,
    "secrets": [token]}``) so records from every logger pass through it.
    """

    def __init__(self, name: str = "", secrets: Sequence[str] = ()) -> None:
        super().__init__(name)
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message and arguments; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg, self._secrets)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(a, self._secrets) if isinstance(a, str) else a for a in record.args
            )
        return True


class TruncateFilter(logging.Filter):
    """Logging filter that bounds what a request can put in the log.

    A request's text reaches log lines through error messages and tracebacks; an 18.9 KB
    request once added 2.3 MB to the log. Each string argument, the message and the
    traceback are cut to a few KB, saying how much was cut.
    """

    def __init__(self, name: str = "", limit: int = 2000) -> None:
        super().__init__(name)
        self.limit = limit

    def _cut(self, text: str, limit: int) -> str:
        if len(text) <= limit:
            return text
        return f"{text[:limit]}… [{len(text) - limit} characters cut]"

    def filter(self, record: logging.LogRecord) -> bool:
        """Shorten the record in place; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = self._cut(record.msg, self.limit)
        if isinstance(record.args, tuple):
            record.args = tuple(self._cut(a, self.limit) if isinstance(a, str) else a
                                for a in record.args)
        if record.exc_info and not record.exc_text:
            record.exc_text = self._cut(logging.Formatter().formatException(record.exc_info),
                                        4 * self.limit)
        return True


# --------------------------------------------------------------------------- policy


def is_loopback_host(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    bare = host.strip("[]").lower()
    return bare in _LOCAL_HOSTS or bare.startswith("127.")


def _split_host(value: str) -> tuple[str, int | None] | None:
    """Parse a Host header (``name``, ``name:port``, ``[v6]:port``); None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
    else:
        host, sep, rest = value.partition(":")
        rest = sep + rest
    if rest and (not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6):
        return None
    if not host:
        return None
    return host, int(rest[1:]) if rest else None


@dataclass(frozen=True)
class SecurityPolicy:
    """What the middleware allows: the token, host names and extra origins."""

    token: str
    allowed_hosts: frozenset[str]
    allowed_origins: frozenset[str]
    pairings: PairingStore | None = None

    @classmethod
    def from_settings(cls, settings: Settings, token: str) -> SecurityPolicy:
        """Loopback names plus ``Settings.allowed_hosts`` / ``allowed_origins``."""
        hosts = {h.strip("[]").lower() for h in (*_LOCAL_HOSTS, *settings.allowed_hosts)}
        # A specific non-loopback bind address (with --allow-remote) is a name users type.
        if settings.host not in ("0.0.0.0", "::", ""):
            hosts.add(settings.host.strip("[]").lower())
        origins = {o.strip().rstrip("/").lower() for o in settings.allowed_origins if o.strip()}
        origins.discard("*")  # never a wildcard, even if configured
        origins.discard("null")
        return cls(token=token, allowed_hosts=frozenset(hosts), allowed_origins=frozenset(origins),
                   pairings=PairingStore(settings.config_dir))

    def paired_origins(self) -> frozenset[str]:
        """Origins allowed because a paired extension's token lives (a broken file: none)."""
        if self.pairings is None:
            return frozenset()
        try:
            return self.pairings.origins()
        except ConfigError as exc:
            logger.warning("%s", exc)
            return frozenset()

    def pairing_for(self, candidate: str) -> Pairing | None:
        """The paired extension this token belongs to, or None."""
        if self.pairings is None or not candidate:
            return None
        try:
            return self.pairings.find(candidate)
        except ConfigError as exc:
            logger.warning("%s", exc)
            return None

    def host_ok(self, header: str | None) -> bool:
        """The Host header names this machine."""
        parsed = _split_host(header) if header else None
        return parsed is not None and parsed[0] in self.allowed_hosts

    def origin_ok(self, origin: str, server_port: int | None) -> bool:
        """The origin is this server's own or one configured; ``null`` never is."""
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed_origins or origin in self.paired_origins():
            return True
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in ("http", "https") or "/" in rest:
            return False
        parsed = _split_host(rest)
        if parsed is None or parsed[0] not in self.allowed_hosts:
            return False
        port = parsed[1] if parsed[1] is not None else (443 if scheme == "https" else 80)
        return port == server_port

    def token_ok(self, candidate: str | None) -> bool:
        """Constant-time comparison (bytes, so non-ASCII input cannot raise)."""
        if not candidate:
            return False
        given = candidate.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self.token.encode("ascii"))


# --------------------------------------------------------------------------- middleware


_CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept"
_CORS_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
_BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>LocalLoom: sign in</title></head><body style="font-family:sans-serif;max-width:40em;
margin:3em auto"><h1>LocalLoom needs its token</h1><p>This server only answers its owner.
Open the link that <code>localloom serve</code> printed (it ends in <code>#token=...</code>);
it signs this tab in.</p></body></html>"""


def _forbidden(message: str) -> Response:
    return JSONResponse(error_body(message, "invalid_request_error", code="forbidden"), 403)


class SecurityMiddleware:
    """Pure ASGI middleware (streams and disconnects pass through untouched)."""

    def __init__(self, app: ASGIApp, *, policy: SecurityPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what the policy forbids; add CORS headers for allowed cross origins."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check(scope, headers)
        if refusal is None and scope.get(PAIRING_SCOPE_KEY) is not None:
            refusal = await _load_refusal(scope)
        if refusal is not None:
            await _ollama_shaped(scope["path"], refusal)(scope, receive, send)
            return
        origin = headers.get("origin")
        cors = origin is not None and not self._same_origin(origin, scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(_BASE_HEADERS)
                if cors and origin is not None:
                    extra += [(b"access-control-allow-origin", origin.encode("latin-1")),
                              (b"vary", b"Origin")]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _same_origin(self, origin: str, scope: Scope) -> bool:
        host = Headers(scope=scope).get("host", "")
        return origin.strip().rstrip("/").lower() in (f"http://{host}".lower(),
                                                      f"https://{host}".lower())

    def _check(self, scope: Scope, headers: Headers) -> Response | None:
        if scope["type"] == "websocket":
            return _forbidden("This server has no WebSocket endpoints.")
        if not self.policy.host_ok(_single(headers, "host")) or not self._target_ok(scope):
            return _forbidden(
                "Host header not allowed. This server only answers requests addressed to "
                "localhost, 127.0.0.1 or [::1]; add other names with LOCALLOOM_ALLOWED_HOSTS."
            )
        method = scope["method"]
        origin = headers.get("origin")
        server = scope.get("server")
        if origin is not None and (len(headers.getlist("origin")) > 1 or not self.policy.origin_ok(
                origin, server[1] if server else None)):
            return _forbidden(
                f"Origin '{origin[:100]}' is not allowed to call this server. Add it to "
                "LOCALLOOM_ALLOWED_ORIGINS if you trust it (for example chrome-extension://<id>)."
                + _REWRITTEN_HINT * _local_but_other_port(origin))
        if method == "OPTIONS" and "access-control-request-method" in headers:
            return self._preflight(origin)
        if origin is None and _from_another_site(headers):
            return _forbidden(
                "Requests made by other web pages are refused. Open LocalLoom's own page "
                "(the URL `localloom serve` printed), or call the API from a program.")
        if method in _UNSAFE_METHODS and not _json_or_empty(headers):
            return JSONResponse(error_body(
                "This endpoint takes JSON: send 'Content-Type: application/json' (or no body).",
                "invalid_request_error", code="unsupported_media_type"), 415)
        if scope["path"] in PUBLIC_PATHS:
            return None
        if method == "GET" and scope["path"] == "/" and _query_token(scope) is not None:
            return self._login(scope)
        if method in ("GET", "HEAD") and scope["path"] in UI_PATHS:
            return None
        if self._authenticated(scope, headers):
            return None
        pairing = self.policy.pairing_for(_bearer(headers))
        if pairing is None:
            return self._unauthorized(scope, headers)
        scope[PAIRING_SCOPE_KEY] = pairing
        return _scoped_refusal(pairing, method, scope["path"], origin)

    def _target_ok(self, scope: Scope) -> bool:
        """An absolute-form target (``GET http://name/path``) names the host itself."""
        target = scope.get(REQUEST_TARGET_KEY) or scope.get("raw_path") or b"/"
        if target.startswith(b"/"):
            return True
        return self.policy.host_ok(urlsplit(target.decode("latin-1")).netloc)

    def _preflight(self, origin: str | None) -> Response:
        if origin is None:
            return _forbidden("A CORS preflight needs an Origin header.")
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": _CORS_ALLOW_METHODS,
            "Access-Control-Allow-Headers": _CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })

    def _authenticated(self, scope: Scope, headers: Headers) -> bool:
        return self.policy.token_ok(_bearer(headers))

    def _login(self, scope: Scope) -> Response:
        if not self.policy.token_ok(_query_token(scope)):
            return HTMLResponse(_LOGIN_PAGE, status_code=401)
        rest = [(k, v) for k, v in parse_qsl(_query(scope), keep_blank_values=True)
                if k != "token"]
        target = "/" + (f"?{urlencode(rest)}" if rest else "") + f"#token={self.policy.token}"
        return Response(status_code=303, headers={"Location": target,
                                                  "Cache-Control": "no-store",
                                                  "Referrer-Policy": "no-referrer"})

    def _unauthorized(self, scope: Scope, headers: Headers) -> Response:
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            return HTMLResponse(_LOGIN_PAGE, status_code=401)
        body = error_body(
            "Missing or wrong token. Send 'Authorization: Bearer <token>'; the token is in the "
            "server-token file of LocalLoom's config dir (`localloom serve` prints a sign-in URL).",
            "invalid_request_error", code="invalid_api_key")
        return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})


def _bearer(headers: Headers) -> str:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _scoped_refusal(pairing: Pairing, method: str, path: str,
                    origin: str | None) -> Response | None:
    """A paired extension's token works only from its own origin and within its scopes.

    Browsers send ``Origin`` on every request a page could make with this header; an
    extension's own GETs to a host it has permission for go without one, and so do
    programs (which could forge any Origin), so only a present, different Origin is refused.
    """
    if origin is not None and origin.strip().rstrip("/").lower() != pairing.origin:
        return _forbidden(
            f"This token belongs to the paired extension {pairing.origin} and is accepted only "
            "from it. Programs use the server token (`localloom serve` prints a sign-in URL).")
    refusal = scope_refusal(pairing, method, path)
    return None if refusal is None else _forbidden(refusal)


async def _load_refusal(scope: Scope) -> Response | None:
    """Loading a model that is not downloaded downloads it: a paired extension needs the
    ``pull`` scope for that."""
    match = _LOAD_RE.match(scope["path"])
    parts = getattr(getattr(scope.get("app"), "state", None), "parts", None)
    if scope["method"] != "POST" or match is None or parts is None:
        return None
    why = await asyncio.to_thread(pull_refusal, scope[PAIRING_SCOPE_KEY], match.group(1),
                                  parts.catalog, parts.store)
    return None if why is None else _forbidden(why)


_REWRITTEN_HINT = (
    " A browser extension that rewrites Origin to a local address (Page Assist's 'Automatic "
    "Ollama CORS Fix') should send its own: turn that off and pair the extension (docs/OLLAMA.md).")


def _local_but_other_port(origin: str) -> bool:
    """http(s)://localhost or a loopback address on another port (or none): what Page Assist
    sends by default, having rewritten its extension origin."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    parsed = _split_host(rest) if sep and scheme in ("http", "https") and "/" not in rest \
        else None
    return parsed is not None and parsed[0] in _LOCAL_HOSTS


def _ollama_shaped(path: str, refusal: Response) -> Response:
    """A refusal on an Ollama route in Ollama's shape, ``{"error": "message"}`` (the
    ``ollama`` client and the apps built on it show that string to the user)."""
    if not _OLLAMA_RE.match(path) or not isinstance(refusal, JSONResponse):
        return refusal
    error = json.loads(bytes(refusal.body)).get("error")
    if not isinstance(error, dict) or "message" not in error:
        return refusal
    headers = {k: v for k, v in refusal.headers.items()
               if k.lower() not in ("content-length", "content-type")}
    return JSONResponse({"error": error["message"]}, refusal.status_code, headers)


def _from_another_site(headers: Headers) -> bool:
    """A browser subresource request (``<img>``, no-cors ``fetch``) started by another page.

    Browsers omit ``Origin`` on such GETs, and cookies ignore ports, so a page served by any
    other program on 127.0.0.1 is "same-site" and would send our cookie. Top-level
    navigations stay allowed: the other page cannot read what they load. Frames are not
    (clickjacking; the responses also forbid framing).
    """
    if headers.get("sec-fetch-site") not in ("same-site", "cross-site"):
        return False
    if headers.get("sec-fetch-dest") in _FRAME_DESTS:
        return True
    return headers.get("sec-fetch-mode") != "navigate"


def _single(headers: Headers, name: str) -> str | None:
    """The header's value, or None when it is missing or sent more than once."""
    values = headers.getlist(name)
    return values[0] if len(values) == 1 else None


def _json_or_empty(headers: Headers) -> bool:
    ctype = headers.get("content-type")
    if ctype is None:
        return True
    media = ctype.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def _query(scope: Scope) -> str:
    raw: Any = scope.get("query_string", b"")
    return raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)


def _query_token(scope: Scope) -> str | None:
    for key, value in parse_qsl(_query(scope), keep_blank_values=True):
        if key == "token":
            return value
    return None
