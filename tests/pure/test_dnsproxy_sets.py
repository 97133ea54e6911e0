"""The DNS proxy with the coalescing set writer: answers wait for their transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.message
import dns.rcode
import dns.rrset

from runtad.addressbook import AddressBook, Learned
from runtad.dnsproxy import DnsProxy, SetUpdateFailed, Verdict
from runtad.errors import KernelApplyError
from runtad.setwriter import SetWriter
from tests.pure.test_setwriter import FakeKernel

ADDRESSES = {"a.pypi.org": "192.0.2.10", "b.pypi.org": "192.0.2.11", "c.pypi.org": "192.0.2.12"}


class FakeUpstream:
    """Answers each name of ADDRESSES with its address, TTL 300, after one loop turn."""

    async def exchange(self, wire: bytes, *, tcp: bool = False) -> bytes:
        await asyncio.sleep(0)
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        name = query.question[0].name.to_text(omit_final_dot=True)
        response.answer.append(dns.rrset.from_text(query.question[0].name, 300, "IN", "A", ADDRESSES[name]))
        return response.to_wire()


class FakeSandbox:
    name = "sandbox-a"

    def __init__(self, kernel: FakeKernel) -> None:
        self.writer = SetWriter(self.name, AddressBook(), kernel.apply)

    def judge(self, qname_text: str) -> Verdict:
        return Verdict(allowed=True, enforced=True, pattern="*.pypi.org", host=qname_text)

    async def learn_from_dns(self, pattern: str, addresses: list[tuple[str, int]]) -> None:
        try:
            await self.writer.learn([Learned(address, ttl + 5, pattern, "dns") for address, ttl in addresses])
        except KernelApplyError as error:
            raise SetUpdateFailed(str(error)) from error

    def is_denied_answer(self, address: str) -> bool:
        return False


def make_proxy(kernel: FakeKernel) -> DnsProxy:
    return DnsProxy(FakeSandbox(kernel), FakeUpstream(), Path("/nonexistent"), 53)  # type: ignore[arg-type]


def query(name: str) -> bytes:
    return dns.message.make_query(name, "A").to_wire()


def rcode_of(reply: bytes | None) -> str:
    assert reply is not None
    return dns.rcode.to_text(dns.message.from_wire(reply).rcode())


def test_proxy_answer_after_commit() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        proxy = make_proxy(kernel)
        reply = await proxy.answer(query("a.pypi.org"), tcp=False)
        assert rcode_of(reply) == "NOERROR"
        assert kernel.committed == {"192.0.2.10"}

    asyncio.run(scenario())


def test_proxy_failed_batch_servfails() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.fail_next = True
        proxy = make_proxy(kernel)
        replies = await asyncio.gather(
            proxy.answer(query("a.pypi.org"), tcp=False), proxy.answer(query("b.pypi.org"), tcp=False),
        )
        assert [rcode_of(reply) for reply in replies] == ["SERVFAIL", "SERVFAIL"]
        assert proxy.stats["servfail"] == 2
        assert kernel.committed == set()

    asyncio.run(scenario())


def test_proxy_failure_spares_later_batch() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        kernel.gate = asyncio.Event()
        kernel.fail_next = True
        proxy = make_proxy(kernel)
        first = asyncio.ensure_future(proxy.answer(query("a.pypi.org"), tcp=False))
        for _ in range(6):
            await asyncio.sleep(0)
        later = asyncio.ensure_future(proxy.answer(query("c.pypi.org"), tcp=False))
        for _ in range(6):
            await asyncio.sleep(0)
        kernel.gate.set()
        assert rcode_of(await first) == "SERVFAIL"
        assert rcode_of(await later) == "NOERROR"
        assert kernel.committed == {"192.0.2.12"}

    asyncio.run(scenario())


def test_proxy_concurrent_answers_share_transaction() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        proxy = make_proxy(kernel)
        replies = await asyncio.gather(*(proxy.answer(query(name), tcp=False) for name in ADDRESSES))
        assert [rcode_of(reply) for reply in replies] == ["NOERROR"] * 3
        assert len(kernel.transactions) == 1

    asyncio.run(scenario())
