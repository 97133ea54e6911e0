"""The lab's authoritative test DNS server, run as its own process in the inet namespace.

    python -m tests.lab.dns_server --config zone.json --query-log queries.jsonl \\
        --listen 198.51.100.53 --listen 2001:db8:53::53 [--port 53]

It serves UDP and TCP on every --listen address. The zone file is re-read on SIGHUP
and before any query once its inode, mtime or size changed, so a test can change
records mid-test by rewriting the file. Every query is logged as one JSON line
before the reply is sent, so the log is complete by the time a client has its reply.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import socket
import signal
import struct
import time
from contextlib import suppress
from pathlib import Path
from typing import IO, cast

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from tests.lab.dns_answer import (
    Rotator,
    build_error_response,
    build_response,
    max_response_size,
    to_wire,
)
from tests.lab.dns_zone import Zone, ZoneDocument
from tests.lab.errors import LabError
from tests.lab.files import file_version

logger = logging.getLogger("tests.lab.dns_server")
RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024

# Seconds a TCP connection may stay idle between queries before the server closes it.
TCP_IDLE_TIMEOUT = 30.0

_MODE_RCODES = {"servfail": dns.rcode.SERVFAIL, "refused": dns.rcode.REFUSED}


class ZoneStore:
    """The current zone, re-parsed whenever the zone file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: tuple[int, int, int] | None = None
        self._zone = Zone(entries={})

    def current(self) -> Zone:
        if file_version(self.path) != self._version:
            self.reload()
        return self._zone

    def reload(self) -> None:
        # A file that fails to parse keeps the previous zone and is not re-read until it
        # changes again, so a broken edit is logged once rather than on every query.
        self._version = file_version(self.path)
        try:
            document = ZoneDocument.from_json(self.path.read_bytes())
            self._zone = Zone.from_document(document)
        except (OSError, ValueError, KeyError, LabError, dns.exception.DNSException) as exc:
            logger.error("zone file %s not loaded, keeping the previous zone: %s", self.path, exc)


class QueryLog:
    """JSON lines, one per query: time, client, server, qname, qtype, transport."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def record(
        self, *, client: tuple[str, int], server: str, qname: str, qtype: str, transport: str
    ) -> None:
        line = {
            "time": time.time(),
            "client": client[0],
            "client_port": client[1],
            "server": server,
            "qname": qname,
            "qtype": qtype,
            "transport": transport,
        }
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class DnsServer:
    def __init__(self, zones: ZoneStore, query_log: QueryLog) -> None:
        self.zones = zones
        self.query_log = query_log
        self.rotator = Rotator()

    async def respond(
        self, wire: bytes, client: tuple[str, int], server: str, transport: str
    ) -> bytes | None:
        """Return the reply to one query in wire format, or None to send nothing."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException as exc:
            logger.warning("malformed query from %s over %s dropped: %s", client[0], transport, exc)
            return None

        zone = self.zones.current()
        mode, delay_ms = zone.mode, zone.delay_ms
        if query.question:
            question = query.question[0]
            self.query_log.record(
                client=client,
                server=server,
                qname=question.name.to_text(),
                qtype=dns.rdatatype.to_text(question.rdtype),
                transport=transport,
            )
            mode, delay_ms = zone.mode_for(question.name)

        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        if mode == "drop":
            return None
        try:
            if mode in _MODE_RCODES:
                response = build_error_response(query, _MODE_RCODES[mode])
            else:
                response = build_response(zone, query, self.rotator)
            return to_wire(response, max_response_size(query, transport))
        except Exception:
            # A fault in the lab's own zone data or code: the client gets SERVFAIL rather
            # than a timeout, and the traceback goes to the server log.
            logger.exception("building the response to %s failed", query.question)
            return to_wire(build_error_response(query, dns.rcode.SERVFAIL), 512)

    async def serve_tcp(
        self, server: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serve length-prefixed queries on one TCP connection until it closes or idles."""
        peer = writer.get_extra_info("peername")
        client = (peer[0], peer[1])
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                (length,) = struct.unpack("!H", header)
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                reply = await self.respond(wire, client, server, "tcp")
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, address: str) -> None:
        self.server = server
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # One task per query, so a delayed name does not hold up the others.
        task = asyncio.ensure_future(self._answer(data, (str(addr[0]), int(addr[1]))))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, client: tuple[str, int]) -> None:
        reply = await self.server.respond(data, client, self.address, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, client)


async def serve(config: Path, query_log_path: Path, addresses: list[str], port: int) -> None:
    loop = asyncio.get_running_loop()
    server = DnsServer(ZoneStore(config), QueryLog(query_log_path))
    server.zones.reload()

    # UDP is bound before TCP, so a client that sees the TCP port open can use UDP too.
    udp_transports = []
    for address in addresses:
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(_UdpProtocol, server, address), local_addr=(address, port)
        )
        # Room for a burst of queries (a policy of thousands of hosts) while this
        # single-threaded server answers; the default buffer drops hundreds of them.
        # 33 is SO_RCVBUFFORCE, which Python's socket module lacks.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, 33, RECEIVE_BUFFER_BYTES)
        udp_transports.append(transport)
    tcp_servers = [
        await asyncio.start_server(
            functools.partial(server.serve_tcp, address), host=address, port=port
        )
        for address in addresses
    ]

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, server.zones.reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    logger.info("serving DNS on %s port %d", ", ".join(addresses), port)
    await stop.wait()

    for tcp_server in tcp_servers:
        tcp_server.close()
    for transport in udp_transports:
        transport.close()
    server.query_log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Authoritative test DNS server of the lab.")
    parser.add_argument("--config", type=Path, required=True, help="zone file (JSON)")
    parser.add_argument("--query-log", type=Path, required=True, help="query log (JSON lines)")
    parser.add_argument(
        "--listen", action="append", required=True, help="address to serve on (repeatable)"
    )
    parser.add_argument("--port", type=int, default=53, help="UDP and TCP port (default 53)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.config, args.query_log, args.listen, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
