"""A deliberately faulty OpenAI-compatible server on 127.0.0.1, for the fault tests.

It speaks real HTTP (chunked SSE) and behaves by the requested model's name:

* ``ok``: three lines, ``finish_reason`` "length", usage, ``[DONE]``;
* ``slow``: waits ``SLOW_S`` seconds before answering (past the front's read timeout);
* ``hold``: sends the first line, then waits ``HOLD_S`` seconds before finishing;
* ``fail500``: HTTP 500 with an OpenAI error body;
* ``cut``: a request for more than 3 tokens gets three lines and then the connection is
  dropped without a finish (as a crashed server's would be); smaller ones finish;
* anything else: HTTP 404 "model not found".

A request with ``"stream": false`` gets the same answer whole (``cut`` sends part of the body
and drops the connection).

``POST /control`` with ``{"down": true}`` makes every endpoint answer 500 (health checks
included) until ``{"down": false}``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_S = 3.0
HOLD_S = 1.0
MODELS = ("ok", "slow", "hold", "fail500", "cut")
_WORDS = ("Alpha is first.\n", "Beta is second.\n", "Gamma is third.\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultyServer

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "server_error"}})

    def do_GET(self) -> None:
        if self.server.down:
            self._error(500, "down for the test")
        elif self.path == "/v1/models":
            self._json(200, {"object": "list",
                             "data": [{"id": m, "object": "model"} for m in MODELS]})
        else:
            self._error(404, f"no {self.path}")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/control":
            self.server.down = bool(body.get("down"))
            self._json(200, {"down": self.server.down})
            return
        self.server.requests += 1
        model = body.get("model")
        if self.server.down or model == "fail500":
            self._error(500, "the test server failed on purpose")
        elif model not in MODELS:
            self._error(404, f"The model `{model}` does not exist.")
        else:
            if model == "slow":
                time.sleep(SLOW_S)
            answer = self._stream if body.get("stream", False) else self._whole
            answer(str(model), int(body.get("max_tokens") or 16), "messages" in body)

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _event(self, data: Any) -> None:
        self._chunk(b"data: " + json.dumps(data).encode() + b"\n\n")

    def _whole(self, model: str, max_tokens: int, chat: bool) -> None:
        words = _WORDS[:max(1, min(3, max_tokens))]
        text = "".join(words)
        if model == "hold":
            time.sleep(HOLD_S)
        choice = ({"index": 0, "message": {"role": "assistant", "content": text},
                   "finish_reason": "length"} if chat else
                  {"index": 0, "text": text, "finish_reason": "length"})
        body = {"id": "x", "object": "chat.completion" if chat else "text_completion",
                "model": model, "choices": [choice],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(words),
                          "total_tokens": 5 + len(words)}}
        if model == "cut" and max_tokens > 3:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # half an answer, then gone
            return
        self._json(200, body)

    def _stream(self, model: str, max_tokens: int, chat: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        words = _WORDS[:max(1, min(3, max_tokens))]

        def choice(text: str | None, finish: str | None) -> dict[str, Any]:
            if chat:
                return {"index": 0, "delta": {"content": text} if text else {},
                        "finish_reason": finish}
            return {"index": 0, "text": text or "", "finish_reason": finish}

        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(words):
            self._event({"id": "x", "object": kind, "model": model,
                         "choices": [choice(word, None)]})
            if model == "hold" and i == 0:
                time.sleep(HOLD_S)
        if model == "cut" and max_tokens > 3:
            self.connection.shutdown(socket.SHUT_RDWR)  # no finish, no terminating chunk
            return
        self._event({"id": "x", "object": kind, "model": model,
                     "choices": [choice(None, "length")]})
        self._event({"id": "x", "object": kind, "model": model, "choices": [],
                     "usage": {"prompt_tokens": 5, "completion_tokens": len(words),
                               "total_tokens": 5 + len(words)}})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


class FaultyServer(ThreadingHTTPServer):
    """The server; ``url`` is its base, ``down`` its switch, ``requests`` a counter."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.down = False
        self.requests = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> FaultyServer:
        """Serve on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
