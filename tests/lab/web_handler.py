"""Request handling of the lab's web servers.

Every method on every path gets 200 and a JSON body that names the server, so a test
can tell which one responded::

    {"server": "runta-lab-web", "scheme": "https", "server_address": "192.0.2.10",
     "server_port": 443, "client_address": "203.0.113.2", "method": "GET",
     "host": "pypi.org", "target": "/simple/", "path": "/simple/", "sni": "pypi.org",
     "body_bytes": 0}

``target`` is the request target as sent (absolute form included), ``sni`` is null for
plain HTTP or a ClientHello without one. Two paths behave differently:

- ``/bytes/N`` streams N zero bytes (at most 1 GiB) for download tests;
- ``/slow?seconds=S`` sends one byte a second for S seconds (at most 600) to keep a
  connection busy for a long time.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVER_NAME = "runta-lab-web"
MAX_BYTES = 1 << 30
MAX_SLOW_SECONDS = 600
CHUNK_SIZE = 64 * 1024
MAX_REQUEST_BODY = 16 << 20


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        try:
            body_bytes = self._drain_body()
            path = urlsplit(self.path).path
            if path.startswith("/bytes/"):
                self._send_bytes(path.removeprefix("/bytes/"))
            elif path == "/slow":
                self._send_slow()
            else:
                self._send_echo(body_bytes)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            # The client closed the connection mid-response, so the rest has nowhere to go.
            self.close_connection = True

    def _drain_body(self) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BODY:
            self.close_connection = True
            return length
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, CHUNK_SIZE))
            if not chunk:
                break
            remaining -= len(chunk)
        return length

    def _echo(self, body_bytes: int) -> dict[str, Any]:
        server_address = self.connection.getsockname()
        return {
            "server": SERVER_NAME,
            "scheme": getattr(self.server, "scheme", "http"),
            "server_address": server_address[0],
            "server_port": server_address[1],
            "client_address": self.client_address[0],
            "method": self.command,
            "host": self.headers.get("Host"),
            "target": self.path,
            "path": urlsplit(self.path).path,
            "sni": getattr(self.connection, "lab_sni", None),
            "body_bytes": body_bytes,
        }

    def _send_head(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_echo(self, body_bytes: int) -> None:
        body = json.dumps(self._echo(body_bytes)).encode() + b"\n"
        self._send_head(200, "application/json", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error_text(self, message: str) -> None:
        body = message.encode() + b"\n"
        self._send_head(400, "text/plain", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_bytes(self, count_text: str) -> None:
        if not count_text.isdigit() or int(count_text) > MAX_BYTES:
            self._send_error_text(f"/bytes/N takes N from 0 to {MAX_BYTES}, got {count_text!r}")
            return
        remaining = int(count_text)
        self._send_head(200, "application/octet-stream", remaining)
        if self.command == "HEAD":
            return
        chunk = bytes(CHUNK_SIZE)
        while remaining > 0:
            size = min(remaining, CHUNK_SIZE)
            self.wfile.write(chunk[:size])
            remaining -= size

    def _send_slow(self) -> None:
        values = parse_qs(urlsplit(self.path).query).get("seconds", ["0"])
        text = values[0]
        if not text.isdigit() or int(text) > MAX_SLOW_SECONDS:
            self._send_error_text(f"/slow takes seconds from 0 to {MAX_SLOW_SECONDS}, got {text!r}")
            return
        seconds = int(text)
        self._send_head(200, "application/octet-stream", seconds)
        if self.command == "HEAD":
            return
        self.wfile.flush()
        for _ in range(seconds):
            time.sleep(1)
            self.wfile.write(b".")
            self.wfile.flush()
