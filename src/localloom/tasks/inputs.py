"""Where a task's text comes from: an argument, a file, stdin, or a web page.

Web pages are fetched with httpx (timeouts, a byte limit, only text content types) and
their main text is extracted with trafilatura. Every failure is a :class:`TaskError` that
says what to do instead.

Example::

    doc = fetch_url("https://example.org/article")
    doc = read_file(Path("notes.txt"))
    runner.run("summarize", doc.text, source=doc.source)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

from localloom._version import __version__
from localloom.errors import TaskError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "Document",
    "extract_main_text",
    "fetch_url",
    "read_file",
    "read_stream",
]

DEFAULT_TIMEOUT = 20.0  # seconds, for connecting, each read, and the whole transfer
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
_HTML_TYPES = {"text/html", "application/xhtml+xml"}
_TEXT_TYPES = {"text/plain", "text/markdown", "text/x-markdown", "text/csv"}
_KIND_NAMES = {"application/pdf": "a PDF document", "application/octet-stream": "binary data",
               "application/zip": "a ZIP archive", "application/json": "JSON data"}


@dataclass(frozen=True)
class Document:
    """Text to work on and where it came from (a URL, a file path, or None)."""

    text: str
    source: str | None = None


def _decode(data: bytes, where: str, encoding: str | None = None) -> str:
    if b"\x00" in data[:8192]:
        raise TaskError(f"{where} looks like a binary file, not text. Give LocalLoom a text, "
                        "Markdown or HTML file.")
    for candidate in (encoding, "utf-8-sig"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")  # any bytes decode; better than refusing a text file


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:512].lower()
    return head.startswith(("<!doctype html", "<html")) or "<body" in head


def extract_main_text(html: str, url: str | None = None) -> str:
    """The main text of an HTML page (article body, no menus); TaskError if none."""
    import trafilatura

    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True,
                               output_format="txt")
    if not text or not text.strip():
        where = url or "The HTML"
        raise TaskError(f"{where} has no main text that LocalLoom could find (it may be built "
                        "by JavaScript or be mostly images). Copy the text and pass it directly "
                        "or with --file.")
    return text.strip()


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """A text, Markdown or HTML file (HTML is reduced to its main text)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TaskError(f"{path} is {size:,} bytes; the limit is {max_bytes:,}. Split the "
                            "file or pass a part of it.")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise TaskError(f"There is no file {path}. Check the path.") from exc
    except IsADirectoryError as exc:
        raise TaskError(f"{path} is a folder; give a text file.") from exc
    except OSError as exc:
        raise TaskError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    text = _decode(data, str(path))
    if path.suffix.lower() in {".html", ".htm", ".xhtml"} or _looks_like_html(text):
        text = extract_main_text(text)
    return Document(text=text, source=str(path))


def read_stream(stream: IO[str], max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Text from standard input (or any text stream), up to `max_bytes` characters."""
    text = stream.read(max_bytes + 1)
    if len(text) > max_bytes:
        raise TaskError(f"The input is longer than {max_bytes:,} characters. Pass a shorter "
                        "text or split it.")
    return Document(text=text, source=None)


def _content_type(response: httpx.Response) -> tuple[str, str | None]:
    header = response.headers.get("content-type", "")
    media = header.split(";")[0].strip().lower()
    return media, response.charset_encoding


def _check_type(url: str, media: str) -> None:
    if not media or media in _HTML_TYPES or media in _TEXT_TYPES:
        return
    if media.startswith("text/"):
        return
    kind = _KIND_NAMES.get(media)
    if kind is None:
        kind = f"{media.split('/')[0]} content" if "/" in media else "not text"
    raise TaskError(
        f"{url} is {kind} ({media}), not a web page or text. LocalLoom reads HTML and plain "
        "text; save the document's text to a file and use --file."
    )


def _read_body(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise TaskError(f"{url} is {int(declared):,} bytes; the limit is {max_bytes:,}. "
                        "Save the part you need to a file and use --file.")
    body = bytearray()
    for piece in response.iter_bytes():
        body += piece
        if len(body) > max_bytes:
            raise TaskError(f"{url} sent more than {max_bytes:,} bytes, the limit. Save the "
                            "part you need to a file and use --file.")
        if time.monotonic() > deadline:
            raise TaskError(f"{url} took too long to send its page. Try again later, or save "
                            "the text to a file and use --file.")
    return bytes(body)


def fetch_url(url: str, *, timeout: float = DEFAULT_TIMEOUT,
              max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Fetch a web page and return its main text (plain-text pages as they are)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TaskError(f"'{url}' is not an http(s) web address. Use --file for local files.")
    deadline = time.monotonic() + timeout
    headers = {"User-Agent": f"LocalLoom/{__version__} (+local text tasks)",
               "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"}
    try:
        with httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True,
                          max_redirects=5, headers=headers) as client, \
                client.stream("GET", url) as response:
            if response.status_code >= 400:
                raise TaskError(f"{url} answered HTTP {response.status_code} "
                                f"{response.reason_phrase}. Check the address.")
            media, charset = _content_type(response)
            _check_type(url, media)
            body = _read_body(response, url, max_bytes, deadline)
    except httpx.TimeoutException as exc:
        raise TaskError(f"{url} did not answer within {timeout:g} s. Check the address and "
                        "your connection, or save the text to a file and use --file.") from exc
    except httpx.TooManyRedirects as exc:
        raise TaskError(f"{url} redirects too many times. Open it in a browser and use the "
                        "final address.") from exc
    except httpx.HTTPError as exc:
        raise TaskError(f"Could not fetch {url}: {exc}. Check the address and your "
                        "connection.") from exc
    text = _decode(body, url, charset)
    if media in _HTML_TYPES or (not media and _looks_like_html(text)):
        text = extract_main_text(text, url=url)
    return Document(text=text, source=url)
