"""The Hugging Face Hub seam: file metadata through huggingface_hub, then a resumable GET.

huggingface_hub's HEAD (``get_hf_file_metadata``) gives the size, the LFS sha256 (ETag) and the
commit; the bytes then come with ranged GETs appended to a ``.part`` file and hashed as they are
written, so a resumed download only hashes the kept prefix once and fetches the rest.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

# LocalLoom is about privacy: huggingface_hub 2.x otherwise fetches an "agent harnesses" list
# from the Hub for its User-Agent telemetry on every process's first request. setdefault keeps
# a user's explicit HF_HUB_DISABLE_TELEMETRY=0. It must be set before huggingface_hub imports.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from huggingface_hub import get_hf_file_metadata, get_token, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from localloom.catalog.entry import ModelEntry
from localloom.errors import DownloadError, HubAuthError, IntegrityError, OfflineError
from localloom.store._files import (
    DISK_FULL_ERRNOS,
    disk_full_error,
    format_mb,
    hash_file,
    open_append_nofollow,
    remove,
)
from localloom.store._progress import Reporter

__all__ = ["RemoteFile", "Transfer", "fetch_remote", "hub_endpoint"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    """The Hub to talk to: HF_ENDPOINT read now (huggingface_hub reads it only at import)."""
    return (os.environ.get("HF_ENDPOINT") or _DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class RemoteFile:
    """What the Hub says about one file, and how to fetch it."""

    url: str
    headers: dict[str, str] = field(repr=False)
    sha256: str | None
    size: int
    commit: str | None


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of whichever HTTP stack this huggingface_hub version uses."""
    errors: list[type[BaseException]] = [OSError, httpx.RequestError]
    for module_name, name in (("httpx2", "RequestError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module_name), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _auth_error(entry: ModelEntry, status: int | None) -> HubAuthError:
    repo = entry.source.repo
    token = "HF_TOKEN is set but was refused" if get_token() else "no HF_TOKEN is set"
    return HubAuthError(
        f"The Hub refused access to {repo} (HTTP {status}; {token}). The repo may be gated, "
        f"private or misspelled: check the name, accept its terms at {_DEFAULT_ENDPOINT}/{repo} "
        "if it is gated, then set HF_TOKEN to a read token and run the same command again."
    )


def _status_error(entry: ModelEntry, status: int | None, detail: str) -> DownloadError:
    source = entry.source
    if status == 404:
        return DownloadError(
            f"The Hub has no file {source.file!r} in {source.repo} at revision "
            f"{source.revision!r} (HTTP 404). Check the entry's repo, file and revision "
            "(`localloom models` shows them)."
        )
    return DownloadError(
        f"The Hub answered HTTP {status} for '{entry.id}' ({detail}). Try again later; "
        f"`localloom pull {entry.id}` resumes what was already received."
    )


def fetch_remote(entry: ModelEntry, *, endpoint: str, timeout: float) -> RemoteFile:
    """HEAD the file on the Hub: size, LFS sha256 and commit, mapped to LocalLoom errors."""
    source = entry.source
    assert source.repo is not None and source.file is not None
    url = hf_hub_url(source.repo, source.file, revision=source.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint)
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise _auth_error(entry, status) from exc
        raise _status_error(entry, status, str(exc).splitlines()[0]) from exc
    except OfflineModeIsEnabled as exc:
        raise OfflineError(
            f"huggingface_hub is in offline mode (HF_HUB_OFFLINE) and '{entry.id}' is not "
            f"downloaded. Unset HF_HUB_OFFLINE and run `localloom pull {entry.id}`."
        ) from exc
    except _network_errors() as exc:
        raise DownloadError(
            f"Could not reach the Hub at {endpoint} for '{entry.id}' ({exc}). Check the network "
            f"(or HF_ENDPOINT) and run `localloom pull {entry.id}` again."
        ) from exc
    if meta.size is None:
        raise DownloadError(
            f"The Hub did not say how big {source.file!r} is, so it cannot be checked. "
            f"Try `localloom pull {entry.id}` again later."
        )
    etag = (meta.etag or "").lower()
    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"
    download_url = meta.location
    if download_url == url and meta.commit_hash:
        # Fetch the commit the HEAD saw, so a branch moving mid-download cannot mix two files.
        download_url = hf_hub_url(source.repo, source.file, revision=meta.commit_hash,
                                  endpoint=endpoint)
    if _origin(download_url) != _origin(url):
        headers.pop("authorization", None)  # a signed CDN link must not receive the token
    return RemoteFile(url=download_url, headers=headers,
                      sha256=etag if _SHA256.match(etag) else None,
                      size=meta.size, commit=meta.commit_hash)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _Retry(Exception):
    """A transient failure: wait and resume from the bytes already kept."""


class Transfer:
    """Append the missing bytes of ``remote`` to ``part``, hashing as it writes.

    Network failures are retried ``retries`` times in a row (the count resets whenever bytes
    arrive); after that a DownloadError says how to resume. ``run()`` returns the sha256 of
    the whole ``.part``; the caller compares it and promotes the file.
    """

    def __init__(self, entry: ModelEntry, remote: RemoteFile, part: Path, report: Reporter, *,
                 timeout: float, retries: int, retry_wait: float) -> None:
        self._entry = entry
        self._remote = remote
        self._part = part
        self._report = report
        self._timeout = timeout
        self._retries = retries
        self._retry_wait = retry_wait
        self._hasher: Any = hashlib.sha256()
        self.done = 0

    def run(self) -> str:
        """Download until the ``.part`` holds ``remote.size`` bytes; return its sha256."""
        open_append_nofollow(self._part).close()  # exists even for an empty file
        self._hasher, self.done = hash_file(self._part)
        if self.done > self._remote.size:
            self._restart()
        text = f"Resuming {self._entry.id}" if self.done else f"Downloading {self._entry.id}"
        self._report(self.done, self._remote.size, text, force=True)
        # Count failures in a row without new bytes; a restart from zero is not progress.
        failures, best = 0, self.done
        timeout = httpx.Timeout(self._timeout)
        with httpx.Client(follow_redirects=True, timeout=timeout) as client:
            while self.done < self._remote.size:
                try:
                    self._fetch(client, text)
                    if self.done < self._remote.size:
                        raise _Retry("the connection closed before the end of the file")
                except (_Retry, httpx.TransportError) as exc:
                    failures = 1 if self.done > best else failures + 1
                    best = max(best, self.done)
                    if failures > self._retries:
                        raise self._interrupted(exc) from exc
                    time.sleep(self._retry_wait * 2 ** (failures - 1))
        return str(self._hasher.hexdigest())

    def _restart(self) -> None:
        remove(self._part)
        self._hasher, self.done = hashlib.sha256(), 0

    def _fetch(self, client: httpx.Client, text: str) -> None:
        headers = dict(self._remote.headers)
        start = self.done
        if start:
            headers["Range"] = f"bytes={start}-"
        with client.stream("GET", self._remote.url, headers=headers) as response:
            self._check_response(response, start)
            if start and response.status_code == 200:
                self._restart()  # the server ignored Range and sends the whole file
            with open_append_nofollow(self._part) as out:
                try:
                    for chunk in response.iter_bytes():
                        self._write(out, chunk, text)
                finally:
                    self._flush(out)

    def _write(self, out: Any, chunk: bytes, text: str) -> None:
        if self.done + len(chunk) > self._remote.size:
            self._restart()
            raise IntegrityError(
                f"The Hub sent more bytes for '{self._entry.id}' than the "
                f"{self._remote.size} it announced; the partial file was deleted and nothing "
                f"was installed. Run `localloom pull {self._entry.id}` again later."
            )
        try:
            out.write(chunk)
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(exc, self._entry.id, self._part, self.done) from exc
            raise
        self._hasher.update(chunk)
        self.done += len(chunk)
        self._report(self.done, self._remote.size, text)

    def _flush(self, out: Any) -> None:
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise disk_full_error(exc, self._entry.id, self._part, self.done) from exc
            raise

    def _check_response(self, response: httpx.Response, start: int) -> None:
        status = response.status_code
        if status in (401, 403):
            raise _auth_error(self._entry, status)
        if status == 416:
            self._restart()  # the kept bytes do not fit this file: start over
            raise _Retry("the server refused the resume offset (HTTP 416)")
        if status in _RETRY_STATUS:
            raise _Retry(f"HTTP {status}")
        if status not in (200, 206):
            raise _status_error(self._entry, status, response.reason_phrase)
        if status == 200:
            length = response.headers.get("Content-Length")
            if length is not None and response.headers.get("Content-Encoding", "identity") \
                    == "identity" and int(length) != self._remote.size:
                self._wrong_size(int(length))
            return
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and match.group(3) not in ("*", str(self._remote.size)):
            self._wrong_size(int(match.group(3)))
        if not match or int(match.group(1)) != start:
            self._restart()
            raise _Retry("the server answered a different byte range than asked")

    def _wrong_size(self, served: int) -> None:
        self._restart()
        raise IntegrityError(
            f"The Hub announced {self._remote.size} bytes for '{self._entry.id}' but serves "
            f"{served}; nothing was installed. The file may be changing upstream: run "
            f"`localloom pull {self._entry.id}` again later."
        )

    def _interrupted(self, exc: BaseException) -> DownloadError:
        model_id = self._entry.id
        return DownloadError(
            f"The download of '{model_id}' stopped at {format_mb(self.done)} of "
            f"{format_mb(self._remote.size)} ({exc or type(exc).__name__}). What was received is "
            f"kept: run the same command again (`localloom pull {model_id}`) to resume from there."
        )
