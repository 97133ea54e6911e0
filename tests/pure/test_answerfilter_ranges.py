"""AnswerFilter's integer ranges give the verdicts that ipaddress gives."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtad.answerfilter import DEFAULT_DENIED_NETWORKS, AnswerFilter, DeniedRanges

POOLS = ["10.213.0.0/16", "fd72:756e:7461::/48"]
OWN_ADDRESSES = ["192.0.2.1", "2001:db8::1"]


def full_filter() -> AnswerFilter:
    answer_filter = AnswerFilter(DEFAULT_DENIED_NETWORKS)
    answer_filter.extend(POOLS, OWN_ADDRESSES)
    return answer_filter


def test_ranges_network_bounds() -> None:
    network = ipaddress.ip_network("198.51.100.0/24")
    ranges = DeniedRanges.build(4, [network], [])
    assert ranges.contains(int(ipaddress.ip_address("198.51.100.0")))
    assert ranges.contains(int(ipaddress.ip_address("198.51.100.255")))
    assert not ranges.contains(int(ipaddress.ip_address("198.51.99.255")))
    assert not ranges.contains(int(ipaddress.ip_address("198.51.101.0")))


def test_ranges_skip_other_version() -> None:
    networks = [ipaddress.ip_network("::/0")]
    addresses = [ipaddress.ip_address("2001:db8::1")]
    ranges = DeniedRanges.build(4, networks, addresses)
    assert ranges.ranges == ()
    assert ranges.addresses == frozenset()


def test_ranges_single_address() -> None:
    ranges = DeniedRanges.build(6, [], [ipaddress.ip_address("2001:db8::1")])
    assert ranges.contains(int(ipaddress.ip_address("2001:db8::1")))
    assert not ranges.contains(int(ipaddress.ip_address("2001:db8::2")))


def test_ranges_skip_scoped_address() -> None:
    ranges = DeniedRanges.build(6, [], [ipaddress.ip_address("fe80::1%eth0")])
    assert ranges.addresses == frozenset()


@pytest.mark.parametrize(
    ("address", "denied"),
    [("::ffff:127.0.0.1", True), ("fe80::1%eth0", True), ("2001:db8::1", True), ("192.0.2.1", True),
     ("10.213.0.1", True), ("2001:db8::2", False), ("192.0.2.2", False)],
)  # fmt: skip
def test_filter_verdicts(address: str, denied: bool) -> None:
    assert full_filter().is_denied(address) is denied


def test_filter_rejects_invalid_text() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        full_filter().is_denied("192.0.2")


def edge_values(version: int) -> list[int]:
    """Return the addresses at and next to both ends of each denied network of a version."""
    values = []
    for text in [*DEFAULT_DENIED_NETWORKS, *POOLS]:
        network = ipaddress.ip_network(text)
        if network.version != version:
            continue
        first = int(network.network_address)
        last = int(network.broadcast_address)
        values += [
            value
            for value in (first - 1, first, last, last + 1)
            if 0 <= value < 2**network.max_prefixlen
        ]
    return values


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from(edge_values(4))))
def test_filter_matches_ipaddress_v4(value: int) -> None:
    answer_filter = full_filter()
    text = socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    assert answer_filter._check(text) == answer_filter._check_parsed(text)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.integers(0, 2**128 - 1),
        st.sampled_from(edge_values(6)),
        st.integers(0xFFFF00000000, 0xFFFFFFFFFFFF),
    )
)
def test_filter_matches_ipaddress_v6(value: int) -> None:
    answer_filter = full_filter()
    packed = value.to_bytes(16, "big")
    for text in (socket.inet_ntop(socket.AF_INET6, packed), str(ipaddress.IPv6Address(packed))):
        assert answer_filter._check(text) == answer_filter._check_parsed(text)
