"""names._normalize against ipaddress, which it replaces on the fast path."""

from __future__ import annotations

import ipaddress
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from runtad.audit.names import _normalize


def reference(address: str) -> str | None:
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return None


def spellings(value: int, upper: bool) -> list[str]:
    if value < 2**32:
        texts = [socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))]
    else:
        packed = value.to_bytes(16, "big")
        address = ipaddress.IPv6Address(packed)
        texts = [socket.inet_ntop(socket.AF_INET6, packed), str(address), address.exploded]
    return [text.upper() for text in texts] if upper else texts


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.integers(0, 2**32 - 1),
        st.integers(0xFFFF00000000, 0xFFFFFFFFFFFF),  # IPv4-mapped IPv6
        st.integers(2**32, 2**128 - 1),
    ),
    st.booleans(),
)
def test_normalize_matches_ipaddress(value: int, upper: bool) -> None:
    for text in spellings(value, upper):
        assert _normalize(text) == reference(text), text


def test_normalize_edge_cases() -> None:
    cases = [
        "::ffff:192.0.2.1", "::FFFF:C000:201", "fe80::1%eth0", "192.0.2.01", "1.2.3",
        "", "not-an-address", "2001:db8::1\0", "::", "0.0.0.0", "2001:DB8:0:0:0:0:0:1",
    ]  # fmt: skip
    for text in cases:
        assert _normalize(text) == reference(text), text
