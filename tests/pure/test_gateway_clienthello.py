"""TLS ClientHello parser: golden captures, every split, PQ-sized hellos, malformed input, fuzz.

The golden hellos were captured from OpenSSL 3.0.19 `s_client` and curl 7.88.1 connecting
to a local socket (Debian 12). Synthetic hellos come from build_client_hello below.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import struct
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtad.gateway.clienthello import (
    MAX_INPUT_LENGTH,
    ClientHello,
    ClientHelloParser,
    Malformed,
    NeedMore,
    Parsed,
    parse_client_hello,
)

# Golden captures, made with /usr/bin/openssl and /usr/bin/curl against a local socket:
#   OPENSSL_SNI_MIXED_CASE  openssl s_client -connect 127.0.0.1:PORT -servername PyPI.org
#   CURL_SNI                curl -sk --resolve files.pythonhosted.org:PORT:127.0.0.1 https://…
#   OPENSSL_NO_SNI          openssl s_client -connect 127.0.0.1:PORT -noservername
#   OPENSSL_TLS12           openssl s_client -connect 127.0.0.1:PORT -servername pypi.org -tls1_2
OPENSSL_SNI_MIXED_CASE = bytes.fromhex(
    "16030101350100013103033ec863d145e832123c42d324e2b95eb9578d341848ab6661a05bce920b558ffe20"
    "6854962075948143e465e0555ce520a6fe4aef077ec02b7348467955abb35c96003e130213031301c02cc030"
    "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d"
    "003c0035002f00ff010000aa0000000d000b000008507950492e6f7267000b000403000102000a0016001400"
    "1d0017001e0019001801000101010201030104002300000016000000170000000d002a002804030503060308"
    "0708080809080a080b080408050806040105010601030303010302040205020602002b000908030403030302"
    "0301002d00020101003300260024001d0020221c3d20a5df91b50cfb34d2215b9ba87d50fe2842465b831de5"
    "c09e3d95724d"
)
CURL_SNI = bytes.fromhex(
    "1603010200010001fc030373086e7f756d713284593bfd0b1c01b4836ddfa0daf97e6e14912c750e0db96020"
    "37c336638d06dbb2c496e3782cc346b1708cae2f57252394a4537e742abad690003e130213031301c02cc030"
    "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d"
    "003c0035002f00ff010001750000001b001900001666696c65732e707974686f6e686f737465642e6f726700"
    "0b000403000102000a00160014001d0017001e00190018010001010102010301040010000e000c0268320868"
    "7474702f312e31001600000017000000310000000d002a0028040305030603080708080809080a080b080408"
    "050806040105010601030303010302040205020602002b0009080304030303020301002d0002010100330026"
    "0024001d0020158a567814fcf54f95b16140559e64e616e3af3d5daa40e41fd4842fd44ed836001500a70000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000"
)
OPENSSL_NO_SNI = bytes.fromhex(
    "16030101240100012003032a880ea4b67b4494d6d3e164246e99246c089f7f97e7382519a87c20f7d07e6920"
    "2b4acaf079a0d68b491192a6b05698bd4899cce13e98886025ec6d26b359c5f6003e130213031301c02cc030"
    "009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033009d009c003d"
    "003c0035002f00ff01000099000b000403000102000a00160014001d0017001e001900180100010101020103"
    "0104002300000016000000170000000d002a0028040305030603080708080809080a080b0804080508060401"
    "05010601030303010302040205020602002b0009080304030303020301002d00020101003300260024001d00"
    "20f42a41d62b0a792eda512bee55a0a0edd078441e582329140e44ffb8298ec366"
)
OPENSSL_TLS12 = bytes.fromhex(
    "16030100c8010000c403034d8a3561ed330248a5353acf87b755c75b465c344a527c2006c7fc6bc42c1d0300"
    "0038c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c00ac0140039c009c0130033"
    "009d009c003d003c0035002f00ff010000630000000d000b000008707970692e6f7267000b00040300010200"
    "0a000c000a001d0017001e00190018002300000016000000170000000d002a00280403050306030807080808"
    "09080a080b080408050806040105010601030303010302040205020602"
)

# X25519MLKEM768 (draft-kwiatkowski-tls-ecdhe-mlkem) and its key share size in bytes.
GROUP_X25519_MLKEM768 = 0x11EC
MLKEM768_X25519_SHARE = 1216


# Builders


def extension(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def server_name_extension(*names: bytes, name_type: int = 0) -> bytes:
    entries = b"".join(struct.pack("!BH", name_type, len(name)) + name for name in names)
    return extension(0x0000, struct.pack("!H", len(entries)) + entries)


def key_share_extension(group: int, size: int) -> bytes:
    share = struct.pack("!HH", group, size) + bytes(range(256)) * (size // 256) + bytes(size % 256)
    return extension(0x0033, struct.pack("!H", len(share)) + share)


def ech_extension(payload_size: int = 200) -> bytes:
    # ECHClientHello of type outer: type, HpkeSymmetricCipherSuite, config_id, enc, payload.
    body = b"\x00" + struct.pack("!HHB", 0x0001, 0x0001, 7)
    body += struct.pack("!H", 32) + bytes(32) + struct.pack("!H", payload_size) + bytes(payload_size)
    return extension(0xFE0D, body)


def client_hello_body(extensions: list[bytes] | None) -> bytes:
    body = struct.pack("!H", 0x0303) + bytes(32)  # legacy_version, random
    body += b"\x20" + bytes(32)  # legacy_session_id
    body += struct.pack("!H", 4) + bytes.fromhex("13011302")  # cipher_suites
    body += b"\x01\x00"  # legacy_compression_methods: null
    if extensions is not None:
        joined = b"".join(extensions)
        body += struct.pack("!H", len(joined)) + joined
    return body


def handshake(body: bytes, kind: int = 1) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def records(message: bytes, sizes: list[int] | None = None, content_type: int = 22) -> bytes:
    """Wrap message in TLS records whose payloads have the given sizes (the rest in one)."""
    out = b""
    offset = 0
    for size in sizes or []:
        out += struct.pack("!BHH", content_type, 0x0301, size) + message[offset : offset + size]
        offset += size
    if offset < len(message):
        rest = message[offset:]
        out += struct.pack("!BHH", content_type, 0x0301, len(rest)) + rest
    return out


def build_client_hello(
    server_name: bytes | None = b"pypi.org",
    *,
    ech: bool = False,
    key_share: int = 32,
    extra: list[bytes] | None = None,
    record_sizes: list[int] | None = None,
) -> bytes:
    extensions = []
    if server_name is not None:
        extensions.append(server_name_extension(server_name))
    extensions.append(key_share_extension(GROUP_X25519_MLKEM768 if key_share > 32 else 0x001D, key_share))
    if ech:
        extensions.append(ech_extension())
    extensions.extend(extra or [])
    return records(handshake(client_hello_body(extensions)), record_sizes)


def pq_client_hello(server_name: bytes = b"files.pythonhosted.org") -> bytes:
    """A ClientHello over 4 KB: a hybrid ML-KEM key share plus padding (RFC 7685)."""
    padding = extension(0x0015, bytes(3000))
    return build_client_hello(server_name, key_share=MLKEM768_X25519_SHARE, extra=[padding])


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[object]:
    parser = ClientHelloParser()
    bounds = [0, *cuts, len(data)]
    return [parser.feed(data[start:end]) for start, end in itertools.pairwise(bounds)]


def parsed_hello(result: object) -> ClientHello:
    assert isinstance(result, Parsed), result
    return result.hello


# Golden captures


GOLDEN = {
    "openssl": (OPENSSL_SNI_MIXED_CASE, "PyPI.org"),
    "curl": (CURL_SNI, "files.pythonhosted.org"),
    "no_sni": (OPENSSL_NO_SNI, None),
    "tls12": (OPENSSL_TLS12, "pypi.org"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_server_name(name: str) -> None:
    data, expected = GOLDEN[name]
    hello = parsed_hello(parse_client_hello(data))
    assert hello.server_name == expected
    assert not hello.has_ech


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_consumes_whole_record(name: str) -> None:
    data, _ = GOLDEN[name]
    result = parse_client_hello(data)
    assert isinstance(result, Parsed)
    assert result.consumed == len(data)


def test_golden_curl_alpn() -> None:
    assert parsed_hello(parse_client_hello(CURL_SNI)).alpn == ("h2", "http/1.1")


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_split_at_every_byte(name: str) -> None:
    data, _ = GOLDEN[name]
    whole = parse_client_hello(data)
    for cut in range(1, len(data)):
        first, second = feed_in_pieces(data, [cut])
        assert isinstance(first, NeedMore), cut
        assert second == whole, cut


def test_golden_byte_at_a_time() -> None:
    results = feed_in_pieces(CURL_SNI, list(range(1, len(CURL_SNI))))
    assert all(isinstance(result, NeedMore) for result in results[:-1])
    assert parsed_hello(results[-1]).server_name == "files.pythonhosted.org"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_every_prefix_needs_more(name: str) -> None:
    data, _ = GOLDEN[name]
    for end in range(len(data)):
        assert isinstance(parse_client_hello(data[:end]), NeedMore), end


# Large and fragmented hellos


def test_pq_sized_hello_parses() -> None:
    data = pq_client_hello()
    assert len(data) > 4096
    assert parsed_hello(parse_client_hello(data)).server_name == "files.pythonhosted.org"


def test_pq_sized_split_at_every_byte() -> None:
    data = pq_client_hello()
    for cut in range(1, len(data)):
        first, second = feed_in_pieces(data, [cut])
        assert isinstance(first, NeedMore), cut
        assert parsed_hello(second).server_name == "files.pythonhosted.org", cut


def test_pq_sized_across_three_records() -> None:
    message_length = len(pq_client_hello()) - 5
    data = build_client_hello(
        b"files.pythonhosted.org", key_share=MLKEM768_X25519_SHARE,
        extra=[extension(0x0015, bytes(3000))], record_sizes=[1400, 1400],
    )  # fmt: skip
    assert len(data) == message_length + 3 * 5
    assert parsed_hello(parse_client_hello(data)).server_name == "files.pythonhosted.org"


def test_multi_record_split_at_every_byte() -> None:
    data = build_client_hello(b"a.b.pythonhosted.org", record_sizes=[1, 2, 3, 50])
    for cut in range(1, len(data)):
        first, second = feed_in_pieces(data, [cut])
        assert isinstance(first, NeedMore), cut
        assert parsed_hello(second).server_name == "a.b.pythonhosted.org", cut


def test_largest_accepted_hello() -> None:
    unpadded = build_client_hello(b"pypi.org", extra=[extension(0x0015, b"")])
    body_length = len(unpadded) - 5 - 4
    padding = extension(0x0015, bytes(16384 - body_length))
    data = build_client_hello(b"pypi.org", extra=[padding], record_sizes=[16384])
    assert len(data) == 16384 + 4 + 2 * 5
    assert parsed_hello(parse_client_hello(data)).server_name == "pypi.org"


def test_sixteen_kib_plus_one_malformed() -> None:
    body = client_hello_body([server_name_extension(b"pypi.org"), extension(0x0015, bytes(16400))])
    data = records(handshake(body), [16384])
    result = parse_client_hello(data[:100])
    assert isinstance(result, Malformed)
    assert "exceeds" in result.reason


# What the gateway reads from a hello


def test_ech_with_outer_name() -> None:
    hello = parsed_hello(parse_client_hello(build_client_hello(b"ech-public.cdn.test", ech=True)))
    assert hello.has_ech
    assert hello.server_name == "ech-public.cdn.test"


def test_ech_without_server_name() -> None:
    hello = parsed_hello(parse_client_hello(build_client_hello(None, ech=True)))
    assert hello.has_ech
    assert hello.server_name is None


def test_ip_literal_server_name_kept_as_text() -> None:
    hello = parsed_hello(parse_client_hello(build_client_hello(b"192.0.2.10")))
    assert hello.server_name == "192.0.2.10"


def test_non_ascii_server_name_escaped() -> None:
    hello = parsed_hello(parse_client_hello(build_client_hello(b"pypi\xff.org")))
    assert hello.server_name == "pypi\\xff.org"


def test_hello_without_extensions() -> None:
    data = records(handshake(client_hello_body(None)))
    hello = parsed_hello(parse_client_hello(data))
    assert hello.server_name is None
    assert not hello.has_ech


def test_unknown_name_type_ignored() -> None:
    body = client_hello_body([extension(0x0000, _server_name_list((7, b"\x01\x02"), (0, b"pypi.org")))])
    hello = parsed_hello(parse_client_hello(records(handshake(body))))
    assert hello.server_name == "pypi.org"


def _server_name_list(*entries: tuple[int, bytes]) -> bytes:
    joined = b"".join(struct.pack("!BH", kind, len(name)) + name for kind, name in entries)
    return struct.pack("!H", len(joined)) + joined


# Malformed input


def malformed_reason(data: bytes) -> str:
    result = parse_client_hello(data)
    assert isinstance(result, Malformed), result
    return result.reason


def test_http_request_is_not_tls() -> None:
    assert "not a TLS handshake" in malformed_reason(b"GET / HTTP/1.1\r\n")


def test_sslv2_hello_is_not_tls() -> None:
    assert "not a TLS handshake" in malformed_reason(bytes.fromhex("802b0103010012000000100700c0"))


def test_first_byte_alone_rejected() -> None:
    assert "not a TLS handshake" in malformed_reason(b"\x17")


def test_server_hello_rejected() -> None:
    data = records(handshake(client_hello_body([]), kind=2))
    assert "not ClientHello" in malformed_reason(data)


def test_wrong_handshake_type_fails_before_payload() -> None:
    data = records(handshake(client_hello_body([]), kind=2))
    assert "not ClientHello" in malformed_reason(data[:10])


def test_zero_length_record_rejected() -> None:
    assert "record length 0" in malformed_reason(b"\x16\x03\x01\x00\x00")


def test_oversized_record_rejected() -> None:
    assert "record length" in malformed_reason(b"\x16\x03\x01\x40\x01")


def test_unknown_record_version_rejected() -> None:
    assert "record version" in malformed_reason(b"\x16\x04\x00\x00\x10")


def test_alert_between_records_rejected() -> None:
    message = handshake(client_hello_body([server_name_extension(b"pypi.org")]))
    data = records(message[:20]) + records(b"\x02\x28", content_type=21) + records(message[20:])
    assert "content type 21" in malformed_reason(data)


def test_extra_handshake_bytes_rejected() -> None:
    message = handshake(client_hello_body([server_name_extension(b"pypi.org")]))
    assert "follow the ClientHello" in malformed_reason(records(message + b"\x14\x00\x00\x00"))


def test_duplicate_extension_rejected() -> None:
    body = client_hello_body([server_name_extension(b"pypi.org"), extension(0x0033, b""), extension(0x0033, b"")])
    assert "appears twice" in malformed_reason(records(handshake(body)))


def test_two_server_name_extensions_rejected() -> None:
    body = client_hello_body([server_name_extension(b"pypi.org"), server_name_extension(b"other.test")])
    assert "appears twice" in malformed_reason(records(handshake(body)))


def test_two_host_names_rejected() -> None:
    body = client_hello_body([extension(0x0000, _server_name_list((0, b"pypi.org"), (0, b"other.test")))])
    assert "two host names" in malformed_reason(records(handshake(body)))


def test_empty_host_name_rejected() -> None:
    assert "no host name" in malformed_reason(build_client_hello(b""))


def test_truncated_extension_rejected() -> None:
    body = client_hello_body([extension(0x0000, b"\x00\x20\x00\x00\x08pypi")])
    assert "truncated" in malformed_reason(records(handshake(body)))


def test_bytes_after_extensions_rejected() -> None:
    body = client_hello_body([server_name_extension(b"pypi.org")]) + b"\x00"
    assert "follow the extensions" in malformed_reason(records(handshake(body)))


def test_empty_cipher_suites_rejected() -> None:
    body = struct.pack("!H", 0x0303) + bytes(32) + b"\x00" + b"\x00\x00" + b"\x01\x00"
    assert "cipher_suites" in malformed_reason(records(handshake(body)))


def test_input_over_bound_rejected() -> None:
    parser = ClientHelloParser()
    data = build_client_hello(b"pypi.org", record_sizes=[1] * 100)
    result = parser.feed(data[:5 * 64 + 64])
    assert isinstance(result, NeedMore)
    assert isinstance(parser.feed(bytes(MAX_INPUT_LENGTH)), Malformed)


def test_many_tiny_records_rejected_by_bound() -> None:
    message = handshake(client_hello_body([server_name_extension(b"pypi.org"), extension(0x0015, bytes(4000))]))
    data = records(message, [1] * len(message))
    result = feed_in_pieces(data, list(range(600, len(data), 600)))
    assert isinstance(result[-1], Malformed)
    assert "exceeds" in result[-1].reason  # type: ignore[attr-defined]


def test_result_repeats_after_end() -> None:
    parser = ClientHelloParser()
    first = parser.feed(CURL_SNI)
    assert parser.feed(b"\x17\x03\x03") == first
    bad = ClientHelloParser()
    rejected = bad.feed(b"\x15")
    assert bad.feed(CURL_SNI) == rejected


# Fuzz: any bytes in any pieces give one of the three results, never an exception


RESULT_TYPES = (NeedMore, Malformed, Parsed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=600), max_size=12))
def test_fuzz_random_chunks(chunks: list[bytes]) -> None:
    parser = ClientHelloParser()
    for chunk in chunks:
        assert isinstance(parser.feed(chunk), RESULT_TYPES)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(GOLDEN)),
    st.lists(st.tuples(st.integers(0, 516), st.integers(0, 255)), max_size=8),
    st.lists(st.integers(1, 516), max_size=6),
)
def test_fuzz_mutated_golden(name: str, flips: list[tuple[int, int]], cuts: list[int]) -> None:
    data = bytearray(GOLDEN[name][0])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    pieces = sorted({cut for cut in cuts if cut < len(data)})
    for result in feed_in_pieces(bytes(data), pieces):
        assert isinstance(result, RESULT_TYPES)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=64), st.integers(1, 40))
def test_fuzz_tls_prefixed_garbage(payload: bytes, record_count: int) -> None:
    data = records(b"\x01" + payload, [1] * min(record_count, len(payload)))
    assert isinstance(parse_client_hello(data), RESULT_TYPES)


# Live captures from the clients on this machine


def capture_first_flight(argv: list[str]) -> bytes:
    """Run a TLS client against a local socket and return what it sent first."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(10)
        port = server.getsockname()[1]
        command = [part.replace("PORT", str(port)) for part in argv]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(1)
                data = b""
                parser = ClientHelloParser()
                while isinstance(parser.feed(b""), NeedMore) and len(data) < MAX_INPUT_LENGTH:
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    data += piece
                    if not isinstance(parser.feed(piece), NeedMore):
                        break
                return data
        finally:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_live_openssl_servername() -> None:
    data = capture_first_flight(
        ["openssl", "s_client", "-connect", "127.0.0.1:PORT", "-servername", "Files.PythonHosted.org."]
    )
    assert parsed_hello(parse_client_hello(data)).server_name == "Files.PythonHosted.org."


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_live_curl_servername() -> None:
    data = capture_first_flight(
        ["curl", "-sk", "--max-time", "5", "--resolve", "a.b.pythonhosted.org:PORT:127.0.0.1",
         "https://a.b.pythonhosted.org:PORT/"]
    )  # fmt: skip
    assert parsed_hello(parse_client_hello(data)).server_name == "a.b.pythonhosted.org"


def _openssl_has_mlkem() -> bool:
    if shutil.which("openssl") is None:
        return False
    listed = subprocess.run(
        ["openssl", "list", "-kem-algorithms"], check=False, capture_output=True, text=True
    )
    return "ML-KEM" in listed.stdout or "MLKEM" in listed.stdout


@pytest.mark.skipif(not _openssl_has_mlkem(), reason="this openssl has no ML-KEM (added in 3.5)")
def test_live_openssl_mlkem_hello() -> None:
    data = capture_first_flight(
        ["openssl", "s_client", "-connect", "127.0.0.1:PORT", "-servername", "pypi.org",
         "-groups", "X25519MLKEM768"]
    )  # fmt: skip
    assert len(data) > 1200
    assert parsed_hello(parse_client_hello(data)).server_name == "pypi.org"


def test_parsers_share_no_state() -> None:
    # Parsers fed from several threads at once give each its own result.
    results: list[object] = []

    def work(data: bytes) -> None:
        results.append(feed_in_pieces(data, list(range(7, len(data), 7)))[-1])

    threads = [threading.Thread(target=work, args=(data,)) for data, _ in GOLDEN.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(parsed_hello(result).server_name or "" for result in results) == sorted(
        name or "" for _, name in GOLDEN.values()
    )
