"""The lab's web server process: HTTP and HTTPS listeners on many addresses at once.

    python -m tests.lab.web --sites sites.json

sites.json is ``{"listeners": [{"address": "192.0.2.10", "port": 443, "scheme":
"https", "cert": "/path/site.pem"}, ...]}``. On SIGHUP the process re-reads it and
opens the listeners that are new. A certificate file (leaf and key in one PEM) is
re-read at the next TLS handshake after it changed, so the lab can add names to a
site without a restart. The responses are described in web_handler.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import selectors
import signal
import socket
import socketserver
import ssl
import threading
from contextlib import suppress
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.lab.files import file_version
from tests.lab.web_handler import EchoHandler

logger = logging.getLogger("tests.lab.web")

# Seconds a client gets to finish the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


class ServerCertificate:
    """An SSLContext for one PEM file, rebuilt when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: tuple[int, int, int] | None = None
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        with self._lock:
            version = file_version(self.path)
            if self._context is None or version != self._version:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(self.path)
                context.set_alpn_protocols(["http/1.1"])
                context.sni_callback = _record_sni
                self._context, self._version = context, version
            return self._context


def _record_sni(tls_socket: Any, server_name: str | None, context: ssl.SSLContext) -> None:
    # The handler echoes the SNI so a test can see what name the client sent.
    tls_socket.lab_sni = server_name


class EchoServer(ThreadingHTTPServer):
    """One listening socket, with a thread for each connection."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: str, port: int, scheme: str, certificate: ServerCertificate | None
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.scheme = scheme
        self.certificate = certificate
        super().__init__((address, port), EchoHandler)
        # handle_request() is called once the socket is readable. The timeout bounds
        # its wait should the pending connection vanish before accept().
        self.timeout = 0.5

    def server_bind(self) -> None:
        # HTTPServer.server_bind() looks up the FQDN of the address, a DNS query that
        # would hang in the inet namespace. The name is never used here.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.certificate is None:
            super().finish_request(request, client_address)
            return

        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls_socket = self.certificate.context().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.info("TLS handshake from %s failed: %s", client_address[0], exc)
            return
        tls_socket.settimeout(None)
        try:
            super().finish_request(tls_socket, client_address)
        finally:
            tls_socket.close()


class Listeners:
    """The listening sockets, kept in line with the sites file."""

    def __init__(self, sites_path: Path, selector: selectors.BaseSelector) -> None:
        self.sites_path = sites_path
        self.selector = selector
        self.servers: dict[tuple[str, int], EchoServer] = {}

    def reconcile(self) -> None:
        """Open a listener for every new entry of the sites file and update certificates."""
        try:
            listeners = json.loads(self.sites_path.read_text())["listeners"]
        except (OSError, ValueError, KeyError) as exc:
            logger.error("sites file %s not loaded: %s", self.sites_path, exc)
            return

        for listener in listeners:
            key = (listener["address"], int(listener["port"]))
            cert = listener.get("cert")
            existing = self.servers.get(key)
            if existing is not None:
                if existing.certificate is not None and cert:
                    existing.certificate.path = Path(cert)
                continue
            certificate = ServerCertificate(Path(cert)) if listener["scheme"] == "https" else None
            try:
                server = EchoServer(key[0], key[1], listener["scheme"], certificate)
            except OSError as exc:
                logger.error("cannot listen on %s port %d: %s", key[0], key[1], exc)
                continue
            self.servers[key] = server
            self.selector.register(server.socket, selectors.EVENT_READ, server)
            logger.info("listening on %s port %d (%s)", key[0], key[1], listener["scheme"])

    def close(self) -> None:
        for server in self.servers.values():
            self.selector.unregister(server.socket)
            server.server_close()
        self.servers.clear()


def serve(sites_path: Path) -> None:
    """Accept connections on every listener until SIGTERM or SIGINT."""
    selector = selectors.DefaultSelector()
    wakeup_reader, wakeup_writer = socket.socketpair()
    wakeup_reader.setblocking(False)
    wakeup_writer.setblocking(False)
    # Signals only write their number to the wakeup socket, and the loop below acts on it.
    signal.set_wakeup_fd(wakeup_writer.fileno())
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    selector.register(wakeup_reader, selectors.EVENT_READ, None)

    listeners = Listeners(sites_path, selector)
    listeners.reconcile()
    running = True
    while running:
        for key, _ in selector.select():
            if key.data is not None:
                key.data.handle_request()
                continue
            with suppress(BlockingIOError):
                for received in wakeup_reader.recv(64):
                    if received == signal.SIGHUP:
                        listeners.reconcile()
                    else:
                        running = False

    listeners.close()
    selector.close()
    wakeup_reader.close()
    wakeup_writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP and HTTPS echo servers of the lab.")
    parser.add_argument("--sites", type=Path, required=True, help="listeners file (JSON)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    serve(args.sites)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
