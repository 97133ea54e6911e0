"""Upstream resolution of exact allowed hosts (A and AAAA), used to pre-fill the sets."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import dns.rcode
import dns.rdatatype

from .dnswire import (
    FLAG_TC,
    TYPE_A,
    TYPE_AAAA,
    WireError,
    build_query,
    encode_name,
    follow_chain,
    read_reply,
)
from .upstream import Upstream, UpstreamError


@dataclass(frozen=True)
class Resolution:
    host: str
    addresses: tuple[tuple[str, int], ...]  # (address, TTL seconds)
    error: str | None  # why the host has no addresses, or None

    @property
    def ok(self) -> bool:
        return self.error is None


async def resolve_host(upstream: Upstream, host: str) -> Resolution:
    """Resolve host's A and AAAA records upstream, following CNAME chains."""
    encoded_name = encode_name(host)
    a_query = build_query(encoded_name, TYPE_A, _query_id())
    aaaa_query = build_query(encoded_name, TYPE_AAAA, _query_id())
    # Both queries leave before either reply is awaited. When the first server replies to
    # both, the replies are read in turn with no task, because a policy write resolves
    # thousands of hosts and a task per lookup costs more than reading its reply.
    # Otherwise the two lookups go on side by side, each to the next server.
    a_sent = upstream.send(a_query)
    aaaa_sent = upstream.send(aaaa_query)
    try:
        if await _arrived(a_sent) and await _arrived(aaaa_sent):
            a_result = await _resolve_type(upstream, a_query, TYPE_A, a_sent)
            aaaa_result = await _resolve_type(upstream, aaaa_query, TYPE_AAAA, aaaa_sent)
        else:
            a_result, aaaa_result = await asyncio.gather(
                _resolve_type(upstream, a_query, TYPE_A, a_sent),
                _resolve_type(upstream, aaaa_query, TYPE_AAAA, aaaa_sent),
            )
    finally:
        # On cancellation, so that no reply or timeout is left unread in a future.
        for sent in (a_sent, aaaa_sent):
            if sent is not None:
                sent.cancel()
    addresses: list[tuple[str, int]] = []
    errors = []
    for found, error in (a_result, aaaa_result):
        addresses.extend(found)
        if error:
            errors.append(error)
    if addresses:
        return Resolution(host, tuple(addresses), None)
    return Resolution(host, (), "; ".join(errors) or "no A or AAAA records")


def _query_id() -> int:
    # The UDP channel replaces the ID with one of its own. This one is for TCP, where no
    # off-path sender can inject a reply, so the random module is random enough.
    return random.getrandbits(16)


async def _arrived(sent: asyncio.Future[bytes] | None) -> bool:
    """Wait for a query sent by Upstream.send; return whether its reply arrived."""
    if sent is None:
        return False
    try:
        await sent
    except Exception:  # noqa: BLE001 - exchange raises it again, with the other servers' errors
        return False
    return True


async def _resolve_type(
    upstream: Upstream, query: bytes, rdtype: int, started: asyncio.Future[bytes] | None
) -> tuple[list[tuple[str, int]], str | None]:
    try:
        if started is None:
            answer = await upstream.exchange(query)
        else:
            answer = await upstream.exchange(query, started=started)
        reply = read_reply(answer)
        if reply.question.flags & FLAG_TC:
            reply = read_reply(await upstream.exchange(query, tcp=True))
    except UpstreamError as error:
        return [], str(error)
    except WireError as error:
        return [], f"unparsable answer: {error}"
    if reply.rcode != dns.rcode.NOERROR:
        rcode_text = dns.rcode.to_text(dns.rcode.Rcode(reply.rcode))
        return [], f"{dns.rdatatype.to_text(dns.rdatatype.RdataType(rdtype))} lookup returned {rcode_text}"
    return list(follow_chain(reply).addresses), None


# Hosts looked up at once by resolve_in_batches, two queries each (A and AAAA). The bound
# keeps a large policy write from flooding the upstream, whose socket drops queries
# beyond its receive buffer, and every lost reply then costs a whole upstream timeout.
# Measured with dnsmasq 2.90 on loopback (208 KiB default receive buffer, 10,000 hosts):
# 128 hosts lost 18 to 259 queries per run at dnsmasq's socket. 32 and 64 hosts lost
# none and were as fast, because runtad's CPU, not the upstream, then sets the pace.
# NOTE: a remote upstream with a long round trip gets at most 128 queries per round trip.
LOOKUP_CONCURRENCY = 64
# A batch is handed over at this many resolutions, so that a large policy write puts its
# addresses in the sets in a few transactions instead of one per host. Batches of 2,048
# took as much daemon CPU time for 10,000 hosts as batches of 512.
BATCH_MAX_HOSTS = 512
# A smaller batch is handed over once its first resolution has waited this long.
BATCH_MAX_DELAY_SECONDS = 0.02


async def resolve_in_batches(
    upstream: Upstream,
    hosts: Iterable[str],
    concurrency: int = LOOKUP_CONCURRENCY,
    batch_max_hosts: int = BATCH_MAX_HOSTS,
    batch_max_delay: float = BATCH_MAX_DELAY_SECONDS,
) -> AsyncIterator[list[Resolution]]:
    """Resolve hosts with at most concurrency lookups in flight, and yield the results in batches.

    A batch is yielded when it contains batch_max_hosts resolutions, when its first one has
    waited batch_max_delay seconds, or when every host is resolved. Lookups go on while
    the caller handles a batch. Closing the iterator early cancels the lookups in flight,
    and an unexpected error of a lookup is raised here.
    """
    waiting = deque(hosts)
    results: asyncio.Queue[Resolution | Exception] = asyncio.Queue()

    async def work() -> None:
        while waiting:
            host = waiting.popleft()
            try:
                resolution = await resolve_host(upstream, host)
                if not resolution.ok and _timed_out(resolution):
                    # A burst of thousands of lookups can lose a reply on the way (a full
                    # receive buffer upstream or here). One more try saves the host a wait
                    # for the refresher's back-off.
                    resolution = await resolve_host(upstream, host)
            except Exception as error:  # noqa: BLE001 - handed over and raised in the caller
                results.put_nowait(error)
                return
            results.put_nowait(resolution)

    remaining = len(waiting)
    loop = asyncio.get_running_loop()
    workers = [asyncio.ensure_future(work()) for _ in range(min(concurrency, remaining))]
    try:
        while remaining:
            batch = [_unwrap(await results.get())]
            deadline = loop.time() + batch_max_delay
            while len(batch) < min(batch_max_hosts, remaining):
                # Take what is queued without a timer, which costs a task per wait_for.
                if not results.empty():
                    batch.append(_unwrap(results.get_nowait()))
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                item = await _get_within(results, timeout)
                if item is None:
                    break
                batch.append(_unwrap(item))
            remaining -= len(batch)
            yield batch
    finally:
        for worker in workers:
            worker.cancel()


async def _get_within(
    queue: asyncio.Queue[Resolution | Exception], timeout: float
) -> Resolution | Exception | None:
    """Return the next item of queue, or None after timeout seconds.

    Not asyncio.wait_for: on CPython 3.11 it drops a cancellation that arrives as the
    item does, and the refresher that was being stopped then ran on for good.
    """
    getter = asyncio.ensure_future(queue.get())
    try:
        done, _ = await asyncio.wait({getter}, timeout=timeout)
    finally:
        # cancel() is False once get() has returned: its item is then taken below.
        cancelled = getter.cancel()
    if getter in done or not cancelled:
        return getter.result()
    return None


def _timed_out(resolution: Resolution) -> bool:
    return resolution.error is not None and "TimeoutError" in resolution.error


def _unwrap(item: Resolution | Exception) -> Resolution:
    if isinstance(item, Exception):
        raise item
    return item
