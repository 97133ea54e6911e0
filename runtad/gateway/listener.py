"""Per-sandbox gateway listener: the TCP 80/443 connections the ruleset redirects to it.

The listening sockets are created inside the sandbox's namespace on 127.0.0.1 and ::1.
For each connection the listener reads the first flight without sending anything back
and gets a verdict from decision.decide. A denied connection is reset. For an allowed
one it connects to the original destination from the sandbox's namespace, replays the
bytes it read and relays the rest with splice.

Every connection yields exactly one call of on_decision, except one that reached the
port directly instead of through the redirect, one cut short by close(), and one whose
handling failed with an unexpected error (logged with its traceback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import RuntadError
from ..netns import NetnsEnterError, call_in_netns_async
from .clienthello import ClientHelloParser, Malformed, NeedMore, Parsed
from .decision import GATEWAY_BUSY, FirstFlight, GatewayPolicy, Verdict, decide
from .http1 import NOT_HTTP, HttpHeadParser, ParsedRequest
from .relay import DEFAULT_PIPE_SIZE, Relay
from .sockets import (
    OriginalDestinationError,
    OutboundSockets,
    close_with_reset,
    original_destination,
)

log = structlog.get_logger()

TLS_HANDSHAKE_BYTE = 0x16
READ_SIZE = 16 * 1024
LISTEN_BACKLOG = 1024


class GatewayListenError(RuntadError):
    """The gateway cannot listen in a sandbox's namespace; the sandbox does not start."""

    code = "gateway_unavailable"
    status = 503

    def __init__(self, netns: Path, port: int, error: OSError) -> None:
        super().__init__(
            f"cannot listen on TCP port {port} in network namespace {netns}:"
            f" {error.strerror or error}; stop what uses the port in the sandbox"
            " or set another gateway_port in runtad.toml"
        )
        self.netns = netns
        self.port = port
        self.errno = error.errno


@dataclass(frozen=True)
class GatewayOptions:
    """Settings of one listener. Times are in seconds."""

    port: int
    mark: int  # SO_MARK of outbound sockets, accepted by the sandbox's output chain
    first_flight_timeout: float = 5.0
    connect_timeout: float = 10.0
    idle_timeout: float = 3600.0
    # Connections handled at once (reading, connecting or relaying); more are reset.
    max_connections: int = 4096
    pipe_size: int = DEFAULT_PIPE_SIZE


@dataclass(frozen=True)
class GatewayDecision:
    """One allow or deny decision of the gateway, as handed to on_decision."""

    runtime: str
    action: str  # "allow" or "deny"
    reason: str | None  # a decision.DENY_REASONS code when denied
    protocol: str | None  # "tls", "http", or None when neither
    host: str | None
    path: str | None
    destination: str
    port: int
    pattern: str | None = None
    target_host: str | None = None
    ech: bool = False
    learned: bool = False  # the destination is being added to the sets (source sni)
    detail: str | None = None


OnDecision = Callable[[GatewayDecision], object]  # the return value is ignored


class GatewayListener:
    def __init__(
        self, policy: GatewayPolicy, netns_path: Path, options: GatewayOptions, on_decision: OnDecision
    ) -> None:
        self.policy = policy
        self.netns_path = netns_path
        self.options = options
        self.on_decision = on_decision
        self.outbound = OutboundSockets(netns_path, options.mark)
        self.stats = {"allowed": 0, "denied": 0, "direct": 0, "errors": 0}
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Live relay → the host its first flight named (None for none) and its destination.
        self._relays: dict[Relay, tuple[str | None, str]] = {}
        self._learning: set[str] = set()
        self._connections = 0
        self._log = log.bind(runtime=policy.name)

    # --- start and stop -------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._listeners = await call_in_netns_async(self.netns_path, self._open_sockets)
        except NetnsEnterError:
            raise
        except OSError as error:
            raise GatewayListenError(self.netns_path, self.options.port, error) from error
        for sock in self._listeners:
            self._spawn(self._accept_loop(sock))

    async def close(self) -> None:
        """Stop accepting, reset every connection in progress and close the sockets."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for relay in list(self._relays):
            relay.abort("gateway_stopped")
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        self.outbound.close()

    def end_denied_relays(self) -> int:
        """Reset relayed connections that the current policy no longer allows.

        A connection that named a host needs that host allowed still; one that named
        none needs its destination still in the sets.
        """
        if not self.policy.enforced:
            return 0
        ended = 0
        for relay, (host, destination) in list(self._relays.items()):
            if host is None:
                allowed = self.policy.is_allowed_address(destination)
            else:
                allowed = self.policy.judge(host) is not None
            if not allowed:
                relay.abort("revoked")
                ended += 1
        return ended

    @property
    def connections(self) -> int:
        """Connections being read, decided or relayed now."""
        return self._connections

    def _open_sockets(self) -> list[socket.socket]:
        opened: list[socket.socket] = []
        try:
            for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                opened.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address, self.options.port))
                sock.listen(LISTEN_BACKLOG)
                sock.setblocking(False)
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        return opened

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- connections ----------------------------------------------------------------

    async def _accept_loop(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listening)
            except OSError as error:
                # EMFILE and the like: back off instead of spinning on the ready socket.
                self._log.error("gateway_accept_failed", error=str(error))
                await asyncio.sleep(0.1)
                continue
            if self._connections >= self.options.max_connections:
                self._reject_busy(conn)
                continue
            self._connections += 1
            self._spawn(self._serve(conn))

    async def _serve(self, conn: socket.socket) -> None:
        handed_over = False
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                address, port = original_destination(conn)
            except OriginalDestinationError as error:
                self.stats["direct"] += 1
                self._log.debug("gateway_direct_connection", error=str(error))
                return
            parsed = ipaddress.ip_address(address)
            destination = str(parsed)
            if parsed.is_loopback:
                # Not redirected: a process of the sandbox dialled the port itself, and
                # conntrack reports the listener's own address as the destination.
                self.stats["direct"] += 1
                self._log.debug("gateway_direct_connection", destination=destination, port=port)
                return
            flight = await read_first_flight(conn, self.options.first_flight_timeout)
            verdict = await decide(self.policy, flight, destination)
            if not verdict.allowed:
                self._report(flight.protocol, verdict, destination, port)
                return
            handed_over = await self._relay(conn, flight, verdict, destination, port)
        except Exception:  # noqa: BLE001 - one connection's fault must not end the listener
            self.stats["errors"] += 1
            self._log.exception("gateway_connection_failed")
        finally:
            self._connections -= 1
            if not handed_over:
                close_with_reset(conn)

    async def _relay(
        self, conn: socket.socket, flight: FirstFlight, verdict: Verdict, destination: str, port: int
    ) -> bool:
        """Connect upstream and relay; return whether the relay took over conn."""
        loop = asyncio.get_running_loop()
        try:
            upstream = await self.outbound.take(conn.family)
        except OSError as error:
            self._log.error("gateway_outbound_socket_failed", destination=destination, error=str(error))
            self._report(flight.protocol, verdict, destination, port, detail=f"no outbound socket: {error}")
            return False
        try:
            await asyncio.wait_for(loop.sock_connect(upstream, (destination, port)), self.options.connect_timeout)
        except OSError as error:  # TimeoutError included
            close_with_reset(upstream)
            detail = f"connect failed: {error.strerror or 'timed out'}"
            self._report(flight.protocol, verdict, destination, port, detail=detail)
            return False
        except BaseException:
            upstream.close()
            raise

        learned = self._start_learning(verdict, destination)
        self._report(flight.protocol, verdict, destination, port, learned=learned)
        relay = Relay(conn, upstream, idle_timeout=self.options.idle_timeout, pipe_size=self.options.pipe_size)
        self._relays[relay] = (verdict.host, destination)
        try:
            result = await relay.run(flight.data)
        finally:
            self._relays.pop(relay, None)
        self._log.debug(
            "gateway_relay_ended", host=verdict.host, destination=destination, port=port,
            bytes_up=result.bytes_up, bytes_down=result.bytes_down, ending=result.ending,
        )  # fmt: skip
        return True

    def _start_learning(self, verdict: Verdict, destination: str) -> bool:
        """Add destination to the sets in the background; return whether it was asked."""
        if verdict.learn_ttl is None or verdict.pattern is None:
            return False
        if destination in self._learning:
            return True  # another connection is adding it already
        self._learning.add(destination)
        self._spawn(self._learn(verdict.pattern, destination, verdict.learn_ttl))
        return True

    async def _learn(self, pattern: str, destination: str, ttl: int) -> None:
        try:
            await self.policy.learn_sni(pattern, destination, ttl)
        except Exception as error:  # noqa: BLE001 - logged; the kernel keeps what it had
            # The connection stays allowed; the next one is judged by the gateway again.
            self._log.error("gateway_learn_failed", destination=destination, pattern=pattern, error=str(error))
        finally:
            self._learning.discard(destination)

    def _reject_busy(self, conn: socket.socket) -> None:
        try:
            address, port = original_destination(conn)
        except OriginalDestinationError:
            address, port = "", 0
        close_with_reset(conn)
        self._report(None, Verdict(False, GATEWAY_BUSY), address, port)

    def _report(
        self, protocol: str | None, verdict: Verdict, destination: str, port: int, *,
        learned: bool = False, detail: str | None = None,
    ) -> None:  # fmt: skip
        decision = GatewayDecision(
            runtime=self.policy.name,
            action="allow" if verdict.allowed else "deny",
            reason=verdict.reason,
            protocol=protocol,
            host=verdict.host,
            path=verdict.path,
            destination=destination,
            port=port,
            pattern=verdict.pattern,
            target_host=verdict.target_host,
            ech=verdict.ech,
            learned=learned,
            detail=detail or verdict.detail,
        )
        self.stats["allowed" if verdict.allowed else "denied"] += 1
        self._log.debug(
            "gateway_decision", action=decision.action, reason=decision.reason, host=decision.host,
            path=decision.path, destination=destination, port=port, detail=decision.detail,
        )  # fmt: skip
        try:
            self.on_decision(decision)
        except Exception:  # noqa: BLE001 - an audit fault must not block enforcement
            self._log.exception("gateway_report_failed")


async def read_first_flight(conn: socket.socket, timeout: float) -> FirstFlight:
    """Read until the ClientHello or request head is complete, invalid, or time runs out."""
    loop = asyncio.get_running_loop()
    data = bytearray()
    parser: ClientHelloParser | HttpHeadParser | None = None
    protocol: str | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await loop.sock_recv(conn, READ_SIZE)
                if not chunk:
                    return FirstFlight(bytes(data), protocol, invalid="connection closed before the first flight was complete")
                data += chunk
                if parser is None:
                    if chunk[0] == TLS_HANDSHAKE_BYTE:
                        parser, protocol = ClientHelloParser(), "tls"
                    else:
                        parser, protocol = HttpHeadParser(), "http"
                result = parser.feed(chunk)
                if isinstance(result, NeedMore):
                    continue
                if isinstance(result, Parsed):
                    return FirstFlight(bytes(data), protocol, hello=result.hello)
                if isinstance(result, ParsedRequest):
                    return FirstFlight(bytes(data), protocol, request=result.request)
                assert isinstance(result, Malformed)
                if result.reason == NOT_HTTP:
                    protocol = None  # neither TLS nor HTTP
                return FirstFlight(bytes(data), protocol, invalid=result.reason)
    except TimeoutError:
        return FirstFlight(bytes(data), protocol, timed_out=True, invalid=f"no complete first flight in {timeout:g} s")
    except OSError as error:
        return FirstFlight(bytes(data), protocol, invalid=f"read failed: {error.strerror or error}")
