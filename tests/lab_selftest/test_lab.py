"""Self-test of the lab: real namespaces, real dig and curl, no daemon involved."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import Lab, cleanup_stale, fixtures
from tests.lab.clients import run_curl, run_dig
from tests.lab.errors import AddressNotAllowedError, LabError
from tests.lab.netns import IP, list_netns, netns_exists
from tests.lab.stale import REGISTRY_DIR

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root for network namespaces"),
]

# Module attributes, so pytest finds the lab fixtures here.
lab = fixtures.lab
lab_session = fixtures.lab_session

PYPI_V4 = "192.0.2.10"
PYPI_V6 = "2001:db8::10"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
MANY_NAME = "many.example.test"
MANY_ADDRESSES = [f"192.0.2.{host}" for host in range(100, 140)]


@pytest.fixture(scope="module")
def pypi(lab_session: Lab) -> Lab:
    """The shared lab with pypi.org served on one IPv4 and one IPv6 address."""
    lab_session.add_host("pypi.org", v4=[PYPI_V4], v6=[PYPI_V6], ttl=300)
    return lab_session


@pytest.fixture(scope="module")
def many(lab_session: Lab) -> Lab:
    """The shared lab with a name of 40 A records, too many for 512 bytes."""
    lab_session.dns.set_records(MANY_NAME, "A", MANY_ADDRESSES, ttl=120)
    return lab_session


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Topology


def test_host_forwarding_enabled(lab_session: Lab) -> None:
    argv = ["sysctl", "-n", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    completed = lab_session.exec_in(lab_session.host_netns, argv)
    assert completed.stdout.split() == ["1", "1"]


def test_host_default_routes_via_inet(lab_session: Lab) -> None:
    v4 = lab_session.exec_in(lab_session.host_netns, [IP, "route", "show", "default"])
    v6 = lab_session.exec_in(lab_session.host_netns, [IP, "-6", "route", "show", "default"])
    assert "via 203.0.113.1" in v4.stdout
    assert "via 2001:db8:ffff::1" in v6.stdout


def test_server_address_outside_documentation_rejected(lab_session: Lab) -> None:
    with pytest.raises(AddressNotAllowedError):
        lab_session.add_server_address("10.1.2.3")


def test_share_mounts_netns_visible_outside(lab_session: Lab) -> None:
    probe = f"{lab_session.name}-mounts"
    added = lab_session.exec_in(
        lab_session.host_netns, [IP, "netns", "add", probe], share_mounts=True
    )
    try:
        entered = subprocess.run([IP, "netns", "exec", probe, "true"], check=False)
    finally:
        subprocess.run([IP, "netns", "delete", probe], check=False, capture_output=True)
    assert added.returncode == 0
    assert entered.returncode == 0


def test_start_takes_seconds() -> None:
    started = time.monotonic()
    with Lab():
        elapsed = time.monotonic() - started
    assert elapsed < 5.0


# DNS


def test_dig_a_returns_address_and_ttl(pypi: Lab) -> None:
    result = run_dig(pypi, pypi.host_netns, "pypi.org", "A")
    assert result.status == "NOERROR"
    assert result.values("A") == [PYPI_V4]
    assert [record.ttl for record in result.answer] == [300]


def test_dig_aaaa_returns_address(pypi: Lab) -> None:
    result = run_dig(pypi, pypi.host_netns, "pypi.org", "AAAA")
    assert result.values("AAAA") == [PYPI_V6]


def test_dig_over_ipv6_transport(pypi: Lab) -> None:
    result = run_dig(pypi, pypi.host_netns, "pypi.org", "A", server=pypi.dns_address_v6)
    assert result.values("A") == [PYPI_V4]


def test_cname_chain_keeps_owner_case(lab: Lab) -> None:
    lab.dns.set_records("pypi.org", "CNAME", ["edge.cdn.test"])
    lab.dns.set_records("edge.cdn.test", "CNAME", ["e1.cdn.test."])
    lab.dns.set_records("E1.CDN.test", "A", ["192.0.2.20"], ttl=60)

    result = run_dig(lab, lab.host_netns, "pypi.org", "A")

    owners = [(record.owner, record.rtype, record.value) for record in result.answer]
    assert owners == [
        ("pypi.org.", "CNAME", "edge.cdn.test."),
        ("edge.cdn.test.", "CNAME", "e1.cdn.test."),
        ("E1.CDN.test.", "A", "192.0.2.20"),
    ]


def test_many_records_udp_sets_tc(many: Lab) -> None:
    result = run_dig(many, many.host_netns, MANY_NAME, "A", "+notcp", "+noedns", "+ignore")
    assert "tc" in result.flags
    assert result.answer == []


def test_many_records_tcp_complete(many: Lab) -> None:
    result = run_dig(many, many.host_netns, MANY_NAME, "A", "+tcp")
    assert "tc" not in result.flags
    assert result.values("A") == MANY_ADDRESSES


def test_many_records_large_edns_payload_fits(many: Lab) -> None:
    result = run_dig(many, many.host_netns, MANY_NAME, "A", "+notcp", "+bufsize=4096", "+ignore")
    assert "tc" not in result.flags
    assert len(result.values("A")) == 40


def test_many_records_small_edns_payload_truncates(many: Lab) -> None:
    result = run_dig(many, many.host_netns, MANY_NAME, "A", "+notcp", "+bufsize=600", "+ignore")
    assert "tc" in result.flags


def test_rotation_changes_addresses(lab_session: Lab) -> None:
    pool = [f"192.0.2.{host}" for host in range(150, 156)]
    lab_session.dns.set_rotation("files.rotation.test", pool, per_answer=2, ttl=30)

    answers = [
        run_dig(lab_session, lab_session.host_netns, "files.rotation.test").values("A")
        for _ in range(3)
    ]

    assert answers == [pool[0:2], pool[2:4], pool[4:6]]


def test_per_record_ttl(lab_session: Lab) -> None:
    lab_session.dns.set_records("ttl.test", "A", [("192.0.2.60", 60), ("192.0.2.61", 600)])
    result = run_dig(lab_session, lab_session.host_netns, "ttl.test")
    assert [(record.value, record.ttl) for record in result.answer] == [
        ("192.0.2.60", 60),
        ("192.0.2.61", 600),
    ]


def test_wildcard_answers_deep_name(lab_session: Lab) -> None:
    lab_session.dns.set_records("*.wild.test", "A", ["192.0.2.70"])
    result = run_dig(lab_session, lab_session.host_netns, "a.b.C.wild.test")
    assert result.answer[0].owner == "a.b.C.wild.test."
    assert result.values("A") == ["192.0.2.70"]


def test_https_record_served(lab_session: Lab) -> None:
    lab_session.dns.set_records("svc.test", "HTTPS", ['1 . alpn="h2"'])
    result = run_dig(lab_session, lab_session.host_netns, "svc.test", "HTTPS")
    assert result.values("HTTPS") == ['1 . alpn="h2"']


def test_servfail_mode(lab_session: Lab) -> None:
    lab_session.dns.set_records("broken.test", "A", ["192.0.2.80"])
    lab_session.dns.set_mode("broken.test", "servfail")
    result = run_dig(lab_session, lab_session.host_netns, "broken.test")
    assert result.status == "SERVFAIL"


def test_refused_mode(lab_session: Lab) -> None:
    lab_session.dns.set_mode("refused.test", "refused")
    result = run_dig(lab_session, lab_session.host_netns, "refused.test")
    assert result.status == "REFUSED"


def test_drop_mode_sends_nothing(lab_session: Lab) -> None:
    lab_session.dns.set_records("silent.test", "A", ["192.0.2.81"])
    lab_session.dns.set_mode("silent.test", "drop")
    result = run_dig(lab_session, lab_session.host_netns, "silent.test", "A", "+time=1")
    assert result.status is None


def test_delay_mode_delays_answer(lab_session: Lab) -> None:
    lab_session.dns.set_records("slow.test", "A", ["192.0.2.82"])
    lab_session.dns.set_mode("slow.test", "answer", delay_ms=700)

    started = time.monotonic()
    result = run_dig(lab_session, lab_session.host_netns, "slow.test", "A", "+time=3")
    elapsed = time.monotonic() - started

    assert result.values("A") == ["192.0.2.82"]
    assert elapsed >= 0.7


def test_global_mode_applies_to_every_name(lab: Lab) -> None:
    lab.dns.set_records("any.test", "A", ["192.0.2.83"])
    lab.dns.set_global_mode("servfail")
    result = run_dig(lab, lab.host_netns, "any.test")
    assert result.status == "SERVFAIL"


def test_unknown_name_nxdomain_with_soa(lab_session: Lab) -> None:
    result = run_dig(lab_session, lab_session.host_netns, "no-such-name.test")
    assert result.status == "NXDOMAIN"
    assert [record.rtype for record in result.authority] == ["SOA"]


def test_missing_type_nodata_with_soa(lab_session: Lab) -> None:
    lab_session.dns.set_records("v4only.test", "A", ["192.0.2.84"])
    result = run_dig(lab_session, lab_session.host_netns, "v4only.test", "AAAA")
    assert result.status == "NOERROR"
    assert result.answer == []
    assert [record.rtype for record in result.authority] == ["SOA"]


def test_records_change_between_queries(lab_session: Lab) -> None:
    lab_session.dns.set_records("moving.test", "A", ["192.0.2.85"])
    first = run_dig(lab_session, lab_session.host_netns, "moving.test")
    lab_session.dns.set_records("moving.test", "A", ["192.0.2.86"])
    second = run_dig(lab_session, lab_session.host_netns, "moving.test")
    assert first.values("A") == ["192.0.2.85"]
    assert second.values("A") == ["192.0.2.86"]


def test_removed_name_nxdomain(lab_session: Lab) -> None:
    lab_session.dns.set_records("gone.test", "A", ["192.0.2.87"])
    lab_session.dns.remove("gone.test")
    result = run_dig(lab_session, lab_session.host_netns, "gone.test")
    assert result.status == "NXDOMAIN"


def test_query_log_records_query(lab_session: Lab) -> None:
    run_dig(lab_session, lab_session.host_netns, "Logged.Example.test", "TXT", "+tcp")
    logged = [
        entry for entry in lab_session.dns.queries() if entry["qname"] == "Logged.Example.test."
    ]
    assert len(logged) == 1
    assert logged[0]["qtype"] == "TXT"
    assert logged[0]["transport"] == "tcp"
    assert logged[0]["client"] == "203.0.113.2"


def test_invalid_record_rejected(lab_session: Lab) -> None:
    with pytest.raises(LabError):
        lab_session.dns.set_records("bad.test", "A", ["not-an-address"])


# Web


def test_https_v4_echoes_host(pypi: Lab) -> None:
    result = run_curl(
        pypi, pypi.host_netns, "https://pypi.org/simple/", "--resolve", f"pypi.org:443:{PYPI_V4}"
    )
    assert result.http_code == 200
    assert result.json()["host"] == "pypi.org"
    assert result.json()["path"] == "/simple/"
    assert result.json()["server_address"] == PYPI_V4
    assert result.json()["sni"] == "pypi.org"


def test_https_v6_echoes_host(pypi: Lab) -> None:
    result = run_curl(
        pypi, pypi.host_netns, "https://pypi.org/", "--resolve", f"pypi.org:443:[{PYPI_V6}]"
    )
    assert result.http_code == 200
    assert result.json()["host"] == "pypi.org"
    assert result.json()["server_address"] == PYPI_V6


def test_http_echoes_server_address(pypi: Lab) -> None:
    result = run_curl(
        pypi, pypi.host_netns, "http://pypi.org/x", "--resolve", f"pypi.org:80:{PYPI_V4}"
    )
    assert result.http_code == 200
    assert result.json()["scheme"] == "http"
    assert result.json()["server_address"] == PYPI_V4


def test_https_untrusted_without_lab_ca(pypi: Lab) -> None:
    result = run_curl(
        pypi,
        pypi.host_netns,
        "https://pypi.org/",
        "--resolve",
        f"pypi.org:443:{PYPI_V4}",
        ca_cert=SYSTEM_CA,
    )
    assert result.http_code == 0
    assert result.returncode != 0


def test_https_wildcard_certificate(lab_session: Lab) -> None:
    lab_session.add_web_server("192.0.2.90", ["*.pythonhosted.org"])
    result = run_curl(
        lab_session,
        lab_session.host_netns,
        "https://files.pythonhosted.org/",
        "--resolve",
        "files.pythonhosted.org:443:192.0.2.90",
    )
    assert result.http_code == 200
    assert result.json()["host"] == "files.pythonhosted.org"


def test_shared_address_serves_second_name(pypi: Lab) -> None:
    pypi.add_host("other.test", v4=[PYPI_V4])
    result = run_curl(
        pypi, pypi.host_netns, "https://other.test/", "--resolve", f"other.test:443:{PYPI_V4}"
    )
    assert result.http_code == 200
    assert result.json()["sni"] == "other.test"


def test_bytes_path_streams_count(pypi: Lab) -> None:
    result = run_curl(
        pypi,
        pypi.host_netns,
        "https://pypi.org/bytes/300000",
        "--resolve",
        f"pypi.org:443:{PYPI_V4}",
    )
    assert result.http_code == 200
    assert len(result.body) == 300000


def test_slow_path_trickles(pypi: Lab) -> None:
    started = time.monotonic()
    result = run_curl(
        pypi,
        pypi.host_netns,
        "http://pypi.org/slow?seconds=2",
        "--resolve",
        f"pypi.org:80:{PYPI_V4}",
    )
    elapsed = time.monotonic() - started
    assert result.body == ".."
    assert elapsed >= 1.8


# Teardown


@pytest.fixture
def closed_lab() -> Iterator[tuple[Lab, list[int]]]:
    """A lab with a web server, closed, with the pids it had before close()."""
    closing_lab = Lab()
    try:
        closing_lab.start()
        closing_lab.add_host("closing.test", v4=["192.0.2.95"])
        pids = closing_lab.pids
        closing_lab.close()
        yield closing_lab, pids
    finally:
        closing_lab.close()


def test_close_deletes_namespaces(closed_lab: tuple[Lab, list[int]]) -> None:
    closing_lab, _ = closed_lab
    assert not netns_exists(closing_lab.host_netns)
    assert not netns_exists(closing_lab.inet_netns)


def test_close_ends_processes(closed_lab: tuple[Lab, list[int]]) -> None:
    _, pids = closed_lab
    assert len(pids) == 2
    assert [pid for pid in pids if _is_alive(pid)] == []


def test_close_twice_is_safe(closed_lab: tuple[Lab, list[int]]) -> None:
    closing_lab, _ = closed_lab
    closing_lab.close()
    assert closing_lab.work_dir is None


def test_failed_start_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_dns(self: Lab) -> None:
        raise LabError("start interrupted on purpose")

    monkeypatch.setattr(Lab, "_start_dns", fail_dns)
    failing_lab = Lab()
    with pytest.raises(LabError, match="on purpose"):
        failing_lab.start()
    assert not netns_exists(failing_lab.host_netns)
    assert not netns_exists(failing_lab.inet_netns)
    assert not (REGISTRY_DIR / failing_lab.name).exists()


def test_cleanup_stale_deletes_prefixed_only(lab_session: Lab) -> None:
    stale = "rtl-5ta1e0-host"
    unrelated = "rtlkeep-5ta1e0"
    subprocess.run([IP, "netns", "add", stale], check=True)
    subprocess.run([IP, "netns", "add", unrelated], check=True)
    try:
        deleted = cleanup_stale()
        remaining = list_netns()
    finally:
        subprocess.run([IP, "netns", "delete", unrelated], check=False)
        subprocess.run([IP, "netns", "delete", stale], check=False, capture_output=True)

    assert stale in deleted
    assert all(name.startswith("rtl-") for name in deleted)
    assert unrelated in remaining
    assert lab_session.host_netns in remaining
