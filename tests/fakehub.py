"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1 that serves files like the Hub.

It answers what huggingface_hub and LocalLoom's store ask for:

- ``HEAD|GET /{repo}/resolve/{revision}/{file}`` with ``ETag`` and ``X-Linked-Etag`` (the
  quoted sha256), ``X-Linked-Size``, ``X-Repo-Commit``, ``Content-Length``, ``Accept-Ranges``;
  ranged GETs answer ``206`` with ``Content-Range`` (``416`` past the end).
- ``GET /api/models/{repo}[/revision/{rev}]`` and ``/api/models/{repo}/tree/{rev}`` (JSON).
- With ``cdn=True``, ``/resolve`` answers ``302`` to a second server (another origin, like the
  Hub's CDN) that serves ``/blobs/{sha256}``; that server never needs a token.

Knobs for failure tests: :meth:`FakeHub.cut_after` (drop the connection after N body bytes,
once or always), :meth:`FakeHub.corrupt` (flip one byte), :meth:`FakeHub.require_token` (401
without a token, 403 with a wrong one), :meth:`FakeHub.throttle` (bytes per second),
``ignore_range``, and ``add_file(..., sha256=..., size=...)`` to announce wrong values.
Every request is recorded in :attr:`FakeHub.requests`.

Example::

    with FakeHub() as hub:
        info = hub.add_file("org/model-GGUF", "model.Q4_0.gguf", os.urandom(1 << 20))
        os.environ["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["FakeHub", "HubFile", "RequestRecord"]

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)??)"
                  r"(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?/?$")
_BLOB = re.compile(r"^/blobs/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SEND_CHUNK = 1 << 14


@dataclass(frozen=True)
class HubFile:
    """One file on the fake Hub; ``sha256``/``size`` are the true values of ``data``."""

    repo: str
    path: str
    data: bytes = field(repr=False)
    commit: str
    sha256: str
    size: int
    announced_sha256: str
    announced_size: int


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake Hub (or its CDN) answered."""

    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int
    body_bytes: int


@dataclass
class _Cut:
    after: int
    times: int | None  # None: every response


class FakeHub:
    """The server and its knobs; use as a context manager or call start()/stop()."""

    def __init__(self, *, cdn: bool = False) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str, str], HubFile] = {}  # (repo, commit, path)
        self._refs: dict[tuple[str, str], str] = {}  # (repo, branch) -> commit
        self._records: list[RequestRecord] = []
        self._cut: _Cut | None = None
        self._corrupt_at: int | None = None
        self._token: str | None = None
        self._bps: int | None = None
        self.ignore_range = False
        self._servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []
        self._use_cdn = cdn
        self.url = ""
        self.cdn_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeHub:
        """Listen on 127.0.0.1 (random ports) in background threads."""
        self.url = self._serve("hub")
        if self._use_cdn:
            self.cdn_url = self._serve("cdn")
        return self

    def _serve(self, role: str) -> str:
        handler = type(f"_{role.title()}Handler", (_Handler,), {"hub": self, "role": role})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                  name=f"fakehub-{role}", daemon=True)
        thread.start()
        self._servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        """Stop listening."""
        for server, thread in self._servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self._servers.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- content -----------------------------------------------------------------------------

    def add_file(self, repo: str, path: str, data: bytes, *, revision: str = "main",
                 sha256: str | None = None, size: int | None = None,
                 new_commit: bool = False) -> HubFile:
        """Serve ``data`` as ``repo``/``path`` at branch ``revision``.

        ``sha256``/``size`` override what the Hub announces (to play a lying or changed Hub).
        ``new_commit`` moves the branch to a fresh commit holding the old files plus this one.
        """
        with self._lock:
            old = self._refs.get((repo, revision))
            commit = old if old and not new_commit else os.urandom(20).hex()
            if old and new_commit:
                for (r, c, p), f in list(self._files.items()):
                    if r == repo and c == old:
                        self._files[(repo, commit, p)] = HubFile(**{**f.__dict__,
                                                                   "commit": commit})
            self._refs[(repo, revision)] = commit
            true_sha = hashlib.sha256(data).hexdigest()
            info = HubFile(repo=repo, path=path, data=data, commit=commit, sha256=true_sha,
                           size=len(data), announced_sha256=sha256 or true_sha,
                           announced_size=len(data) if size is None else size)
            self._files[(repo, commit, path)] = info
            return info

    def resolve_url(self, repo: str, path: str, revision: str = "main") -> str:
        """The Hub URL of a file, as huggingface_hub builds it."""
        return f"{self.url}/{repo}/resolve/{revision}/{path}"

    # -- knobs -------------------------------------------------------------------------------

    def cut_after(self, nbytes: int | None, times: int | None = 1) -> None:
        """Drop the connection after ``nbytes`` body bytes of a GET; ``times=None``: always."""
        with self._lock:
            self._cut = None if nbytes is None else _Cut(nbytes, times)

    def corrupt(self, offset: int | None) -> None:
        """Flip the byte at ``offset`` in every GET body that covers it (None: stop)."""
        with self._lock:
            self._corrupt_at = offset

    def require_token(self, token: str | None) -> None:
        """Answer 401 without ``Authorization: Bearer <token>``, 403 with another token."""
        with self._lock:
            self._token = token

    def throttle(self, bytes_per_second: int | None) -> None:
        """Send GET bodies at most this fast (None: full speed)."""
        with self._lock:
            self._bps = bytes_per_second

    # -- observations ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far (a copy)."""
        with self._lock:
            return list(self._records)

    def body_requests(self, path: str | None = None) -> list[RequestRecord]:
        """GET requests that returned file bytes (200/206), optionally for one file name."""
        return [r for r in self.requests if r.method == "GET" and r.status in (200, 206)
                and (path is None or r.path.endswith("/" + path) or r.server == "cdn")]

    def reset_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self._records.clear()

    # -- used by the handler -----------------------------------------------------------------

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _lookup(self, repo: str, revision: str, path: str) -> tuple[int, HubFile | None, str]:
        with self._lock:
            known_repo = any(r == repo for r, _ in self._refs)
            commit = self._refs.get((repo, revision), revision)
            info = self._files.get((repo, commit, path))
            commits = {c for (r, c, _p) in self._files if r == repo}
        if not known_repo:
            return 401, None, "RepoNotFound"
        if commit not in commits:
            return 404, None, "RevisionNotFound"
        if info is None:
            return 404, None, "EntryNotFound"
        return 200, info, ""

    def _blob(self, sha: str) -> HubFile | None:
        with self._lock:
            return next((f for f in self._files.values() if f.sha256 == sha), None)

    def _repo_files(self, repo: str, revision: str) -> tuple[str, list[HubFile]] | None:
        with self._lock:
            commit = self._refs.get((repo, revision), revision)
            files = [f for (r, c, _p), f in self._files.items() if r == repo and c == commit]
        return (commit, files) if files else None

    def _auth_status(self, header: str | None) -> int:
        with self._lock:
            token = self._token
        if token is None:
            return 200
        if not header:
            return 401
        return 200 if header == f"Bearer {token}" else 403

    def _take_cut(self) -> int | None:
        with self._lock:
            cut = self._cut
            if cut is None:
                return None
            if cut.times is not None:
                cut.times -= 1
                if cut.times <= 0:
                    self._cut = None
            return cut.after

    def _body_knobs(self) -> tuple[int | None, int | None]:
        with self._lock:
            return self._corrupt_at, self._bps


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    role: str
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        path = urlsplit(self.path).path
        status, sent = 404, 0
        try:
            if self.role == "cdn":
                status, sent = self._cdn(path, head)
            elif (match := _RESOLVE.match(path)) is not None:
                status, sent = self._resolve(match, head)
            elif (match := _API.match(path)) is not None:
                status, sent = self._api(match, head)
            else:
                status = self._error(404, "EntryNotFound", "Not found", head)
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        finally:
            self.hub._record(RequestRecord(
                server=self.role, method=self.command, path=path,
                range=self.headers.get("Range"), authorization=self.headers.get("Authorization"),
                status=status, body_bytes=sent))

    def _error(self, status: int, code: str, message: str, head: bool) -> int:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return status

    def _resolve(self, match: re.Match[str], head: bool) -> tuple[int, int]:
        auth = self.hub._auth_status(self.headers.get("Authorization"))
        if auth != 200:
            message = ("Access to this model is restricted; you must be authenticated."
                       if auth == 401 else "Your token has no access to this gated repo.")
            return self._error(auth, "GatedRepo", message, head), 0
        repo, revision, file = (unquote(match["repo"]), unquote(match["rev"]),
                                unquote(match["file"]))
        status, info, code = self.hub._lookup(repo, revision, file)
        if info is None:
            return self._error(status, code, f"{code} {repo}@{revision}/{file}", head), 0
        if self.hub.cdn_url:
            self.send_response(302)
            self._hub_headers(info)
            self.send_header("Location", f"{self.hub.cdn_url}/blobs/{info.sha256}?sig=x")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return 302, 0
        return self._send_file(info, head, hub_headers=True)

    def _cdn(self, path: str, head: bool) -> tuple[int, int]:
        match = _BLOB.match(path)
        info = self.hub._blob(match["sha"]) if match else None
        if info is None:
            return self._error(404, "EntryNotFound", "No such blob", head), 0
        return self._send_file(info, head, hub_headers=False)

    def _hub_headers(self, info: HubFile) -> None:
        self.send_header("ETag", f'"{info.announced_sha256}"')
        self.send_header("X-Linked-Etag", f'"{info.announced_sha256}"')
        self.send_header("X-Linked-Size", str(info.announced_size))
        self.send_header("X-Repo-Commit", info.commit)

    def _send_file(self, info: HubFile, head: bool, *, hub_headers: bool) -> tuple[int, int]:
        start, end = 0, info.size - 1
        range_header = self.headers.get("Range")
        partial = bool(range_header) and not self.hub.ignore_range and not head
        if partial and range_header is not None:
            match = _RANGE.match(range_header.strip())
            if match is None or (not match[1] and not match[2]):
                return self._error(416, "InvalidRange", "Bad Range header", head), 0
            if match[1]:
                start = int(match[1])
                end = min(int(match[2]), info.size - 1) if match[2] else info.size - 1
            else:
                start = max(0, info.size - int(match[2]))
            if start >= info.size or start > end:
                return self._unsatisfiable(info), 0
        status = 206 if partial else 200
        self.send_response(status)
        if hub_headers:
            self._hub_headers(info)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{info.size}")
        self.end_headers()
        if head:
            return status, 0
        return status, self._send_body(info, start, end)

    def _unsatisfiable(self, info: HubFile) -> int:
        self.send_response(416)
        self.send_header("Content-Range", f"bytes */{info.size}")
        self.send_header("Content-Length", "0")
        self.end_headers()
        return 416

    def _send_body(self, info: HubFile, start: int, end: int) -> int:
        corrupt_at, bps = self.hub._body_knobs()
        body = bytearray(info.data[start:end + 1])
        if corrupt_at is not None and start <= corrupt_at <= end:
            body[corrupt_at - start] ^= 0xFF
        cut = self.hub._take_cut()
        limit = len(body) if cut is None else min(cut, len(body))
        sent = 0
        while sent < limit:
            chunk = body[sent:min(limit, sent + _SEND_CHUNK)]
            self.wfile.write(chunk)
            sent += len(chunk)
            if bps:
                time.sleep(len(chunk) / bps)
        self.wfile.flush()
        if sent < len(body):
            # Drop the connection mid-body, as a flaky network or a dying CDN node would.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        return sent

    def _api(self, match: re.Match[str], head: bool) -> tuple[int, int]:
        repo = unquote(match["repo"])
        revision = unquote(match["rev"] or "main")
        found = self.hub._repo_files(repo, revision)
        if found is None:
            return self._error(404, "RepoNotFound", f"No repo {repo}@{revision}", head), 0
        commit, files = found
        payload: object
        if match["kind"] == "tree":
            payload = [{"type": "file", "path": f.path, "size": f.size, "oid": f.sha256,
                        "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}}
                       for f in files]
        else:
            payload = {"id": repo, "modelId": repo, "sha": commit, "private": False,
                       "gated": False, "tags": ["gguf"], "siblings": [
                           {"rfilename": f.path, "size": f.size,
                            "lfs": {"sha256": f.sha256, "size": f.size}} for f in files]}
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return 200, len(body)
