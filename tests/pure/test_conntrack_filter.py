"""Which conntrack entries end_denied_flows keeps."""

from __future__ import annotations

import socket

from runtad.conntrack import is_kept, is_loopback, pack_addresses
from runtad.ctnetlink import ConntrackEntry


def packed(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)


def entry(destination: str | None, reply_source: str | None = None) -> ConntrackEntry:
    return ConntrackEntry(
        socket.AF_INET,
        packed(destination) if destination else None,
        packed(reply_source) if reply_source else None,
        b"",
    )


ALLOWED = pack_addresses(frozenset({"198.51.100.1", "2001:db8::1"}))


def test_pack_addresses_both_families():
    assert ALLOWED == {packed("198.51.100.1"), packed("2001:db8::1")}


def test_kept_allowed_destination():
    assert is_kept(entry("198.51.100.1", "198.51.100.1"), ALLOWED)


def test_kept_allowed_ipv6_destination():
    assert is_kept(entry("2001:db8::1", "2001:db8::1"), ALLOWED)


def test_ended_denied_destination():
    assert not is_kept(entry("198.51.100.2", "198.51.100.2"), ALLOWED)


def test_ended_denied_ipv6_destination():
    assert not is_kept(entry("2001:db8::2"), ALLOWED)


def test_kept_loopback_destination():
    assert is_kept(entry("127.0.0.53"), ALLOWED)


def test_kept_redirected_dns():
    assert is_kept(entry("192.0.2.53", "127.0.0.1"), ALLOWED)


def test_kept_missing_destination():
    assert is_kept(entry(None), ALLOWED)


def test_loopback_ipv6():
    assert is_loopback(packed("::1"))
    assert not is_loopback(packed("::2"))
    assert not is_loopback(packed("::ffff:127.0.0.1"))


def test_loopback_ipv4_range():
    assert is_loopback(packed("127.255.0.1"))
    assert not is_loopback(packed("128.0.0.1"))
