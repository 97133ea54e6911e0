"""resolve_in_batches: bounded lookups, batches by size and delay, errors and early close."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rrset
import pytest

from runtad import resolver
from runtad.resolver import Resolution, resolve_in_batches
from runtad.upstream import UpstreamError


class FakeUpstream:
    """Answers each A query with 192.0.2.1 and each AAAA query with 2001:db8::1, after delay seconds."""

    def __init__(self, delay: float = 0.0, fail_name: str | None = None) -> None:
        self.delay = delay
        self.fail_name = fail_name
        self.in_flight = 0
        self.max_in_flight = 0
        self.queries = 0

    def send(self, wire: bytes) -> None:
        return None  # no socket of its own: every lookup goes through exchange

    async def exchange(self, wire: bytes, *, tcp: bool = False) -> bytes:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.queries += 1
        try:
            await asyncio.sleep(self.delay)
            query = dns.message.from_wire(wire)
            question = query.question[0]
            if question.name.to_text(omit_final_dot=True) == self.fail_name:
                raise UpstreamError([("192.0.2.53", 53)], "timed out")
            reply = dns.message.make_response(query)
            address = "192.0.2.1" if question.rdtype == dns.rdatatype.A else "2001:db8::1"
            reply.answer.append(dns.rrset.from_text(question.name, 300, "IN", question.rdtype, address))
            return reply.to_wire()
        finally:
            self.in_flight -= 1


async def collect(upstream: FakeUpstream, hosts: list[str], **options: float) -> list[list[Resolution]]:
    return [batch async for batch in resolve_in_batches(upstream, hosts, **options)]  # type: ignore[arg-type]


def hosts(count: int) -> list[str]:
    return [f"h{index}.example.test" for index in range(count)]


def test_batches_every_host_once():
    batches = asyncio.run(collect(FakeUpstream(), hosts(50)))
    resolved = [resolution.host for batch in batches for resolution in batch]
    assert sorted(resolved) == sorted(hosts(50))


def test_batches_addresses_of_both_types():
    (batch,) = asyncio.run(collect(FakeUpstream(), hosts(1)))
    assert batch[0].ok
    assert sorted(batch[0].addresses) == [("192.0.2.1", 300), ("2001:db8::1", 300)]


def test_batches_bound_concurrency():
    upstream = FakeUpstream(delay=0.001)
    asyncio.run(collect(upstream, hosts(100), concurrency=8))
    assert upstream.queries == 200
    # Each host sends its A and AAAA queries at once.
    assert upstream.max_in_flight <= 16


def test_batches_default_bound():
    upstream = FakeUpstream(delay=0.001)
    asyncio.run(collect(upstream, hosts(1000)))
    assert upstream.max_in_flight <= 2 * resolver.LOOKUP_CONCURRENCY


def test_batches_max_hosts():
    batches = asyncio.run(collect(FakeUpstream(delay=0.001), hosts(100), batch_max_hosts=10, batch_max_delay=10.0))
    assert all(len(batch) <= 10 for batch in batches)
    assert sum(len(batch) for batch in batches) == 100


def test_batches_one_when_all_done():
    batches = asyncio.run(collect(FakeUpstream(), hosts(20), batch_max_hosts=512, batch_max_delay=10.0))
    assert [len(batch) for batch in batches] == [20]


def test_batches_delay_hands_over_early():
    # One lookup per worker at a time and 20 ms per lookup: a 5 ms delay closes each batch
    # long before the last host is resolved.
    batches = asyncio.run(
        collect(FakeUpstream(delay=0.02), hosts(6), concurrency=1, batch_max_hosts=512, batch_max_delay=0.005)
    )
    assert len(batches) == 6


def test_batches_failed_lookup_is_resolution():
    (batch,) = asyncio.run(collect(FakeUpstream(fail_name="h0.example.test"), hosts(1)))
    assert not batch[0].ok
    assert "timed out" in (batch[0].error or "")


def test_batches_unexpected_error_raised():
    class BrokenUpstream(FakeUpstream):
        async def exchange(self, wire: bytes, *, tcp: bool = False) -> bytes:
            raise RuntimeError("broken fake")

    with pytest.raises(RuntimeError, match="broken fake"):
        asyncio.run(collect(BrokenUpstream(), hosts(3)))


def test_batches_close_cancels_lookups():
    upstream = FakeUpstream(delay=0.05)

    async def first_batch_only() -> None:
        iterator = resolve_in_batches(upstream, hosts(100), concurrency=4, batch_max_hosts=1)  # type: ignore[arg-type]
        await anext(iterator)
        await iterator.aclose()
        await asyncio.sleep(0.1)

    asyncio.run(first_batch_only())
    assert upstream.in_flight == 0
    assert upstream.queries < 200


def test_batches_no_hosts():
    assert asyncio.run(collect(FakeUpstream(), [])) == []


class OnceLostUpstream(FakeUpstream):
    """Loses the first reply of each query name, as a full receive buffer would."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: set[tuple[str, int]] = set()

    async def exchange(self, wire: bytes, *, tcp: bool = False) -> bytes:
        question = dns.message.from_wire(wire).question[0]
        key = (question.name.to_text(), question.rdtype)
        if key not in self.lost:
            self.lost.add(key)
            self.queries += 1
            raise UpstreamError([("192.0.2.53", 53)], "192.0.2.53:53: TimeoutError")
        return await super().exchange(wire, tcp=tcp)


def test_batches_retry_lost_reply_once():
    upstream = OnceLostUpstream()
    (batch,) = asyncio.run(collect(upstream, hosts(1)))
    assert batch[0].ok
    assert upstream.queries == 4


def test_batches_no_retry_for_other_errors():
    upstream = FakeUpstream(fail_name="h0.example.test")
    (batch,) = asyncio.run(collect(upstream, hosts(1)))
    assert not batch[0].ok
    assert upstream.queries == 2


def test_get_within_times_out_and_keeps_item():
    async def scenario() -> tuple[object, int]:
        queue: asyncio.Queue = asyncio.Queue()
        missing = await resolver._get_within(queue, 0.01)
        queue.put_nowait(Resolution("h0.example.test", (), "x"))
        return missing, queue.qsize()

    missing, left = asyncio.run(scenario())
    assert missing is None
    assert left == 1


def test_get_within_passes_cancellation_on():
    async def scenario() -> bool:
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(resolver._get_within(queue, 5.0))
        await asyncio.sleep(0)
        # The item and the cancellation arrive in the same loop turn.
        queue.put_nowait(Resolution("h0.example.test", (), "x"))
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(scenario())
