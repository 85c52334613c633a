"""Pairing: scoped, revocable tokens for one browser extension origin each.

The browser extension never sees the server's master token. The user approves one extension
origin (``chrome-extension://<id>`` or ``moz-extension://<uuid>``) with ``localloom pair
<origin>`` (or the web UI's Pair button, through ``POST /api/pairings``), which prints a
token the user pastes into the extension. While the pairing lives:

- that exact origin is on the server's Origin allowlist (CORS answers echo it);
- its token is accepted only from that origin, and only for what an extension needs: run
  tasks and Ollama's chat/generate/embed, list, describe and load models, read and write the
  history (pulls, and using models not yet downloaded, only with ``allow_pull``); never
  deleting models (``/api/delete`` included), changing settings, the OpenAI routes or
  managing pairings.

Tokens are stored as SHA-256 hashes in ``pairings.json`` (0600) in the config dir; the
server re-reads the file when it changes, so ``localloom tokens revoke`` takes effect on the
next request. Pairing an origin again replaces its old token (one token per origin).

Example::

    store = PairingStore(settings.config_dir)
    pairing, token = store.pair("chrome-extension://abcdefghijklmnopabcdefghijklmnop")
    store.find(token).origin      # "chrome-extension://abcdefghijklmnopabcdefghijklmnop"
    store.revoke(pairing.id)
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from localloom._fs import write_atomic
from localloom.config import make_private_dir
from localloom.errors import ConfigError, InvalidRequestError, LocalLoomError
from localloom.history.record import utc_now

if TYPE_CHECKING:
    from localloom.catalog.catalog import Catalog
    from localloom.store import ModelStore

__all__ = [
    "PAIRINGS_FILE_NAME",
    "PAIRING_SCOPE_KEY",
    "Pairing",
    "PairingStore",
    "normalize_origin",
    "pull_refusal",
    "router",
    "scope_refusal",
]

PAIRINGS_FILE_NAME = "pairings.json"
# ASGI scope key where the security middleware leaves the paired extension that made a
# request (absent for the server token): services may narrow what it can do further.
PAIRING_SCOPE_KEY = "localloom.pairing"
TOKEN_PREFIX = "llx_"
BASE_SCOPES = ("tasks", "models", "history")
_CHROME_RE = re.compile(r"^chrome-extension://[a-p]{32}$")
_FIREFOX_RE = re.compile(r"^moz-extension://[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                         r"[0-9a-f]{12}$")
# (method, path, scope): the only requests a paired extension's token may make.
_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("GET", re.compile(r"^/api/pairing$"), "tasks"),
    ("GET", re.compile(r"^/api/tasks$"), "tasks"),
    ("POST", re.compile(r"^/api/tasks/[^/]+$"), "tasks"),
    ("POST", re.compile(r"^/api/language$"), "tasks"),
    # Pages' LanguageModel.prompt() through the extension (the model must be downloaded
    # unless the pairing has `pull`: the chat service checks pull_refusal too).
    ("POST", re.compile(r"^/v1/chat/completions$"), "tasks"),
    ("GET", re.compile(r"^/api/(models|ps|status)$"), "models"),
    ("POST", re.compile(r"^/api/models/[^/]+/load$"), "models"),
    ("POST", re.compile(r"^/api/models/[^/]+/pull$"), "pull"),
    # Ollama's API (apps such as Page Assist are browser extensions): generating is running
    # the model, as a task is; listing and describing models is "models"; pull needs "pull"
    # (and so does chat/generate/embed of a model not downloaded: loading downloads it).
    # /api/delete has no rule: no paired token deletes models, as on LocalLoom's own routes.
    ("POST", re.compile(r"^/api/(chat|generate|embed|embeddings)$"), "tasks"),
    ("GET", re.compile(r"^/api/(tags|version)$"), "models"),
    ("POST", re.compile(r"^/api/show$"), "models"),
    ("POST", re.compile(r"^/api/pull$"), "pull"),
    ("GET", re.compile(r"^/api/history(/[^/]+)?$"), "history"),
    ("POST", re.compile(r"^/api/history$"), "history"),
    ("DELETE", re.compile(r"^/api/history/[^/]+$"), "history"),
)


def normalize_origin(origin: str) -> str:
    """The extension origin in canonical form; InvalidRequestError says what one looks like."""
    value = origin.strip().rstrip("/").lower()
    if _CHROME_RE.match(value) or _FIREFOX_RE.match(value):
        return value
    raise InvalidRequestError(
        f"'{origin[:120]}' is not a browser extension origin. Pair the origin the extension's "
        "popup shows: chrome-extension://<32 letters a-p> (Chrome, Edge, Chromium) or "
        "moz-extension://<uuid> (Firefox).", param="origin")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Pairing:
    """One approved extension origin and what its token may do (the token itself is not kept)."""

    id: str
    origin: str
    token_hash: str
    scopes: tuple[str, ...]
    created_at: str

    def public(self) -> dict[str, Any]:
        """What ``tokens list`` and ``GET /api/pairings`` show: everything but the hash."""
        return {"id": self.id, "origin": self.origin, "scopes": list(self.scopes),
                "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pairing:
        """Read one entry of ``pairings.json``."""
        return cls(id=str(data["id"]), origin=str(data["origin"]),
                   token_hash=str(data["token_hash"]),
                   scopes=tuple(str(s) for s in data["scopes"]),
                   created_at=str(data["created_at"]))


class PairingStore:
    """The paired origins in ``<config_dir>/pairings.json``; cheap to ask on every request."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / PAIRINGS_FILE_NAME
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._pairings: tuple[Pairing, ...] = ()

    # -- reading -----------------------------------------------------------------------

    def list(self) -> tuple[Pairing, ...]:
        """Every live pairing, re-read when the file changed (another process paired)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return ()
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._lock:
            if key != self._seen:
                self._pairings = self._load()
                self._seen = key
            return self._pairings

    def _load(self) -> tuple[Pairing, ...]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return tuple(Pairing.from_dict(p) for p in data.get("pairings", []))
        except FileNotFoundError:
            return ()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"The pairings file {self.path} cannot be read ({exc}). Delete it and pair "
                "the extension again (`localloom pair <origin>`).") from exc

    def origins(self) -> frozenset[str]:
        """The origins on the allowlist because a pairing lives."""
        return frozenset(p.origin for p in self.list())

    def find(self, token: str) -> Pairing | None:
        """The pairing this token belongs to, or None (constant-time per entry)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = _hash(token)
        found = None
        for pairing in self.list():
            if hmac.compare_digest(digest, pairing.token_hash):
                found = pairing
        return found

    # -- writing -----------------------------------------------------------------------

    def pair(self, origin: str, *, allow_pull: bool = False) -> tuple[Pairing, str]:
        """Approve ``origin``; returns the pairing and its token (shown once, never stored)."""
        origin = normalize_origin(origin)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        scopes = (*BASE_SCOPES, "pull") if allow_pull else BASE_SCOPES
        pairing = Pairing(id=secrets.token_hex(4), origin=origin, token_hash=_hash(token),
                          scopes=scopes, created_at=utc_now().isoformat(timespec="seconds"))
        with self._edit() as entries:
            entries[:] = [p for p in entries if p.origin != origin] + [pairing]
        return pairing, token

    def revoke(self, key: str) -> builtins.list[Pairing]:
        """Remove the pairing with this id or origin; returns what was removed."""
        wanted = key.strip().rstrip("/").lower()
        with self._edit() as entries:
            gone = [p for p in entries if wanted in (p.id, p.origin)]
            entries[:] = [p for p in entries if p not in gone]
        return gone

    @contextlib.contextmanager
    def _edit(self) -> Iterator[builtins.list[Pairing]]:
        make_private_dir(self.path.parent)
        with FileLock(str(self.path) + ".lock"):
            entries = list(self._load()) if self.path.exists() else []
            yield entries
            self._write(entries)

    def _write(self, entries: builtins.list[Pairing]) -> None:
        data = {"pairings": [{**p.public(), "token_hash": p.token_hash} for p in entries]}
        # Created 0600 from the start: the hashes never sit in a file others can read.
        write_atomic(self.path, json.dumps(data, indent=2), mode=0o600)


def pull_refusal(pairing: Pairing | None, model_id: str, catalog: Catalog,
                 store: ModelStore) -> str | None:
    """Why a paired extension without the ``pull`` scope may not use ``model_id`` (loading a
    model that is not downloaded downloads it), or None. Reads the disk: run off the loop."""
    if pairing is None or "pull" in pairing.scopes:
        return None
    try:
        entry = catalog.get(model_id)
    except LocalLoomError:
        return None  # an unknown model: the route itself says so
    if store.is_cached(entry):
        return None
    return (f"The model '{entry.id}' is not downloaded, and the extension {pairing.origin} was "
            f"paired without permission to download models. Download it with `localloom pull "
            f"{entry.id}` (or in LocalLoom's web page), or pair again with `localloom pair "
            f"{pairing.origin} --allow-pull`.")


def scope_refusal(pairing: Pairing, method: str, path: str) -> str | None:
    """None when the paired extension may make this request, else why not (for a 403)."""
    for rule_method, pattern, scope in _RULES:
        if method == rule_method and pattern.match(path):
            if scope in pairing.scopes:
                return None
            if scope == "pull":
                return (f"The extension {pairing.origin} was paired without permission to "
                        "download models. Download it in LocalLoom (`localloom pull <model>`) "
                        f"or pair again with `localloom pair {pairing.origin} --allow-pull`.")
            return (f"The extension {pairing.origin} was paired without the '{scope}' "
                    f"scope that {method} {path} needs. Pair it again (`localloom pair "
                    f"{pairing.origin}`).")
    return (f"A paired extension's token may not call {method} {path}: it can run tasks, "
            "OpenAI chat completions and Ollama's chat/generate/embed, list, describe and load "
            "models and use the history. Use LocalLoom itself for the rest.")


# --------------------------------------------------------------------------- endpoints

router = APIRouter(tags=["pairing"])


class PairRequest(BaseModel):
    """The body of ``POST /api/pairings`` (the web UI's Pair button)."""

    model_config = ConfigDict(extra="forbid")

    origin: str = Field(max_length=200, description="chrome-extension://<id> or "
                                                    "moz-extension://<uuid>")
    allow_pull: bool = Field(False, description="Also let the extension download models.")


def _store(request: Request) -> PairingStore:
    store: PairingStore = request.app.state.parts.policy.pairings
    return store


@router.get("/api/pairings")
async def list_pairings(request: Request) -> dict[str, Any]:
    """The paired extension origins (master token only; tokens are never shown again)."""
    return {"pairings": [p.public() for p in _store(request).list()]}


@router.get("/api/pairing")
async def own_pairing(request: Request) -> dict[str, Any]:
    """The caller's own pairing (what its token may do: the extension offers a download only
    with ``pull``), or ``{"pairing": null}`` for the server token."""
    pairing: Pairing | None = request.scope.get(PAIRING_SCOPE_KEY)
    return {"pairing": None if pairing is None else pairing.public()}


@router.post("/api/pairings")
async def create_pairing(body: PairRequest, request: Request) -> dict[str, Any]:
    """Pair an extension origin; the answer holds its token, shown this once."""
    pairing, token = _store(request).pair(body.origin, allow_pull=body.allow_pull)
    return {**pairing.public(), "token": token}


@router.delete("/api/pairings/{key}")
async def revoke_pairing(key: str, request: Request) -> dict[str, Any]:
    """Revoke a pairing by its id or origin: its token and origin stop working at once."""
    gone = _store(request).revoke(key)
    if not gone:
        raise HTTPException(404, f"No pairing has the id or origin '{key}'. GET /api/pairings "
                                 "lists them.")
    return {"revoked": [p.public() for p in gone]}
