"""A real HTTP server on 127.0.0.1 serving the pages the URL-input tests fetch."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ARTICLE_HTML = """<!DOCTYPE html>
<html><head><title>Herons of the marsh</title></head>
<body>
<nav><a href="/">Home</a> | <a href="/news">News</a> | <a href="/login">Log in</a></nav>
<article>
<h1>Herons of the marsh</h1>
<p>The grey heron stands motionless at the edge of the water for long minutes, waiting for a
fish to come within reach of its bill. Ornithologists who have watched these birds for decades
say that patience is their most important hunting skill.</p>
<p>In winter the herons gather in large colonies in the tall trees near the river, where they
build untidy nests of sticks that are used again year after year by the same pairs.</p>
<p>Local volunteers count the nests every spring, and their records show that the colony has
grown steadily since the marsh was protected from drainage thirty years ago.</p>
</article>
<footer>Copyright Example News. Cookie settings. Subscribe to our newsletter.</footer>
</body></html>"""

PLAIN_TEXT = "Plain notes about herons.\n\nThey nest in colonies."


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str | None,
              length: int | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        # The client may give up (timeouts, size limits): that is what some tests check.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        if path == "/article.html":
            self._send(200, ARTICLE_HTML.encode(), "text/html; charset=utf-8")
        elif path == "/latin1.html":
            html = ARTICLE_HTML.replace("grey heron", "garza real, la canción")
            self._send(200, html.encode("latin-1"), "text/html; charset=iso-8859-1")
        elif path == "/notes.txt":
            self._send(200, PLAIN_TEXT.encode(), "text/plain; charset=utf-8")
        elif path == "/photo.png":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")
        elif path == "/paper.pdf":
            self._send(200, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf")
        elif path == "/declared-huge.html":
            # Announces 50 MB; the client must refuse before reading it.
            self._send(200, b"<html>", "text/html", length=50_000_000)
        elif path == "/endless.txt":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()  # no length: the body just keeps coming
            try:
                for _ in range(2000):
                    self.wfile.write(b"heron " * 1000)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True
        elif path == "/slow.html":
            time.sleep(3)
            self._send(200, ARTICLE_HTML.encode(), "text/html")
        elif path == "/empty.html":
            self._send(200, b"<html><body><script>app()</script></body></html>", "text/html")
        elif path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/article.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"not found", "text/plain")


@pytest.fixture()
def article_html() -> str:
    """The HTML of the test article page (menus, article, footer)."""
    return ARTICLE_HTML


@pytest.fixture()
def web() -> Iterator[str]:
    """Base URL of a local server with articles, plain text, images, PDFs and traps."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
