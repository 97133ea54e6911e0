"""The shared upstream UDP channel: one socket per server, IDs mapped back."""

from __future__ import annotations

import asyncio
import socket

import dns.message
import pytest

from runtad import upstream as upstream_module
from runtad.upstream import Upstream


async def exchange_many(count: int) -> tuple[list[bytes], list[bytes], int]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()

    def answer() -> None:
        data, peer = server.recvfrom(4096)
        reply = bytearray(data)
        reply[2] |= 0x80  # QR: a response with the query's ID and question
        server.sendto(bytes(reply), peer)

    loop.add_reader(server.fileno(), answer)
    opened = 0
    original = upstream_module._UdpChannel.open

    async def counting_open(host: str, port: int) -> upstream_module._UdpChannel:
        nonlocal opened
        opened += 1
        return await original(host, port)

    upstream_module._UdpChannel.open = counting_open  # type: ignore[method-assign]
    upstream = Upstream.from_texts([f"127.0.0.1:{server.getsockname()[1]}"], 2.0)
    queries = [dns.message.make_query(f"h{index}.test", "A").to_wire() for index in range(count)]
    try:
        answers = await asyncio.gather(*(upstream.exchange(query) for query in queries))
    finally:
        upstream_module._UdpChannel.open = original  # type: ignore[method-assign]
        upstream.close()
        loop.remove_reader(server.fileno())
        server.close()
    return queries, list(answers), opened


def test_concurrent_first_queries_share_one_socket() -> None:
    _, _, opened = asyncio.run(exchange_many(50))
    assert opened == 1


@pytest.mark.parametrize("count", [1, 20])
def test_answers_carry_query_ids(count: int) -> None:
    queries, answers, _ = asyncio.run(exchange_many(count))
    assert [answer[:2] for answer in answers] == [query[:2] for query in queries]


def test_send_none_before_socket_open() -> None:
    upstream = Upstream.from_texts(["127.0.0.1:53"], 2.0)
    assert upstream.send(dns.message.make_query("pypi.org", "A").to_wire()) is None


def test_send_answer_taken_by_started_exchange() -> None:
    async def scenario() -> tuple[bytes, bytes, int]:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        loop = asyncio.get_running_loop()
        received = 0

        def answer() -> None:
            nonlocal received
            data, peer = server.recvfrom(4096)
            received += 1
            reply = bytearray(data)
            reply[2] |= 0x80
            server.sendto(bytes(reply), peer)

        loop.add_reader(server.fileno(), answer)
        upstream = Upstream.from_texts([f"127.0.0.1:{server.getsockname()[1]}"], 2.0)
        warm = dns.message.make_query("warm.test", "A").to_wire()
        query = dns.message.make_query("pypi.org", "A").to_wire()
        try:
            await upstream.exchange(warm)  # opens the socket
            started = upstream.send(query)
            assert started is not None
            answer_wire = await upstream.exchange(query, started=started)
        finally:
            upstream.close()
            loop.remove_reader(server.fileno())
            server.close()
        return query, answer_wire, received

    query, answer, received = asyncio.run(scenario())
    assert answer[:2] == query[:2]
    assert answer[12:] == query[12:]
    assert received == 2
