"""HTTP/1 request head parser: Host, target forms, path, strictness, splits and fuzz."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtad.gateway.clienthello import Malformed, NeedMore
from runtad.gateway.http1 import (
    MAX_HEAD_LENGTH,
    NOT_HTTP,
    HttpHeadParser,
    HttpRequest,
    ParsedRequest,
)
from runtad.hosts import canonical_name

CURL_GET = (
    b"GET /simple/requests/ HTTP/1.1\r\nHost: pypi.org\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)


def parse(head: bytes) -> HttpRequest:
    result = HttpHeadParser().feed(head)
    assert isinstance(result, ParsedRequest), result
    return result.request


def rejection(head: bytes) -> str:
    result = HttpHeadParser().feed(head)
    assert isinstance(result, Malformed), result
    return result.reason


def test_origin_form_host_and_path() -> None:
    request = parse(CURL_GET)
    assert request.host == "pypi.org"
    assert request.path == "/simple/requests/"
    assert request.target_host is None
    assert request.method == "GET"
    assert request.version == "1.1"


def test_consumed_is_head_length() -> None:
    result = HttpHeadParser().feed(CURL_GET + b"body bytes")
    assert isinstance(result, ParsedRequest)
    assert result.consumed == len(CURL_GET)


def test_query_left_out_of_path() -> None:
    request = parse(b"GET /files?token=secret#frag HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
    assert request.path == "/files"
    assert request.target == "/files?token=secret#frag"


def test_host_with_port_and_trailing_dot() -> None:
    request = parse(b"GET / HTTP/1.1\r\nHost: pypi.org.:80\r\n\r\n")
    assert request.host == "pypi.org."
    assert canonical_name(request.host) == "pypi.org"


def test_field_name_and_value_case() -> None:
    request = parse(b"GET / HTTP/1.1\r\nhOsT:   PYPI.ORG  \r\n\r\n")
    assert request.host == "PYPI.ORG"
    assert canonical_name(request.host) == "pypi.org"


def test_ipv6_literal_host() -> None:
    assert parse(b"GET / HTTP/1.1\r\nHost: [2001:db8::7]:80\r\n\r\n").host == "2001:db8::7"


def test_absolute_form_target_host() -> None:
    request = parse(b"GET http://other.test/x/y?q=1 HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
    assert request.target_host == "other.test"
    assert request.host == "pypi.org"
    assert request.path == "/x/y"


def test_absolute_form_without_path() -> None:
    request = parse(b"GET HTTP://PyPI.org:80 HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
    assert request.target_host == "PyPI.org"
    assert request.path == "/"


def test_absolute_form_user_info_rejected() -> None:
    assert "user info" in rejection(b"GET http://pypi.org@evil.test/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n")


def test_absolute_form_other_scheme_rejected() -> None:
    assert "scheme" in rejection(b"GET ftp://pypi.org/ HTTP/1.1\r\nHost: pypi.org\r\n\r\n")


def test_connect_authority_form() -> None:
    request = parse(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
    assert request.target_host == "pypi.org"
    assert request.path is None


def test_asterisk_form() -> None:
    request = parse(b"OPTIONS * HTTP/1.1\r\nHost: pypi.org\r\n\r\n")
    assert request.host == "pypi.org"
    assert request.path is None


def test_http10_without_host() -> None:
    request = parse(b"GET /x HTTP/1.0\r\n\r\n")
    assert request.host is None
    assert request.version == "1.0"


def test_empty_host_is_no_host() -> None:
    assert parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host is None


def test_bare_lf_lines() -> None:
    request = parse(b"GET /a HTTP/1.1\nHost: pypi.org\nAccept: */*\n\n")
    assert request.host == "pypi.org"
    assert request.path == "/a"


def test_two_host_fields_rejected() -> None:
    assert "two Host" in rejection(b"GET / HTTP/1.1\r\nHost: pypi.org\r\nHost: other.test\r\n\r\n")


def test_space_before_colon_rejected() -> None:
    assert "field line" in rejection(b"GET / HTTP/1.1\r\nHost : other.test\r\nHost: pypi.org\r\n\r\n")


def test_obsolete_folding_rejected() -> None:
    assert "folding" in rejection(b"GET / HTTP/1.1\r\nHost: pypi.org\r\n other.test\r\n\r\n")


def test_invalid_port_rejected() -> None:
    assert "port" in rejection(b"GET / HTTP/1.1\r\nHost: pypi.org:8o\r\n\r\n")


def test_http2_preface_rejected() -> None:
    assert "request line" in rejection(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")


@pytest.mark.parametrize("first", [b"\x16\x03\x01", b"\x00", b"SSH-2.0-OpenSSH_9.2p1\xff", b"GET\t/"])
def test_not_http_rejected_at_once(first: bytes) -> None:
    assert rejection(first) == NOT_HTTP


def test_incomplete_head_needs_more() -> None:
    assert isinstance(HttpHeadParser().feed(b"GET / HTTP/1.1\r\nHost: pypi.org\r\n"), NeedMore)


def test_oversized_head_rejected() -> None:
    parser = HttpHeadParser()
    assert isinstance(parser.feed(b"GET / HTTP/1.1\r\n"), NeedMore)
    result = parser.feed(b"X-Filler: " + b"a" * MAX_HEAD_LENGTH + b"\r\n")
    assert isinstance(result, Malformed)
    assert "exceeds" in result.reason


def test_split_at_every_byte() -> None:
    whole = HttpHeadParser().feed(CURL_GET)
    for cut in range(1, len(CURL_GET)):
        parser = HttpHeadParser()
        assert isinstance(parser.feed(CURL_GET[:cut]), NeedMore), cut
        assert parser.feed(CURL_GET[cut:]) == whole, cut


def test_byte_at_a_time() -> None:
    parser = HttpHeadParser()
    results = [parser.feed(CURL_GET[i : i + 1]) for i in range(len(CURL_GET))]
    assert all(isinstance(result, NeedMore) for result in results[:-1])
    assert isinstance(results[-1], ParsedRequest)


def test_result_repeats_after_end() -> None:
    parser = HttpHeadParser()
    first = parser.feed(CURL_GET)
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n") == first


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_fuzz_random_chunks(chunks: list[bytes]) -> None:
    parser = HttpHeadParser()
    for chunk in chunks:
        assert isinstance(parser.feed(chunk), (NeedMore, Malformed, ParsedRequest))


HEAD_ALPHABET = st.sampled_from(
    [b"GET ", b"/", b"http://", b"Host:", b" ", b":", b"[", b"]", b"@", b"\r\n", b"\n", b"a.b",
     b"80", b"HTTP/1.1", b"\t", b"\x00", b"\xff"]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(HEAD_ALPHABET, max_size=40), st.lists(st.integers(1, 200), max_size=5))
def test_fuzz_head_like_input(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"GET / HTTP/1.1\r\n" + b"".join(pieces) + b"\r\n\r\n"
    parser = HttpHeadParser()
    bounds = [0, *sorted(cut for cut in cuts if cut < len(data)), len(data)]
    for start, end in itertools.pairwise(bounds):
        assert isinstance(parser.feed(data[start:end]), (NeedMore, Malformed, ParsedRequest))
