"""runtad's own lookups of exact hosts: refresh before expiry, retry, removal; pass-through."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import add_common_hosts
from tests.e2e.runtad_process import RuntadProcess
from tests.e2e.test_dns_cases import element_timeouts
from tests.lab.topology import Lab

pytestmark = pytest.mark.root


@pytest.fixture
def short_ttl_runtad(tmp_path: Path) -> Iterator[RuntadProcess]:
    """A daemon that keeps runtad's own TTLs short, so refreshes happen within a test."""
    with Lab() as world:
        daemon = RuntadProcess(add_common_hosts(world), tmp_path, min_ttl=1, ttl_grace=1, retry_min=0.5, retry_max=1.0)
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.close()


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_refresh_follows_changed_address(short_ttl_runtad: RuntadProcess) -> None:
    lab = short_ttl_runtad.lab
    lab.add_server_address("192.0.2.50")
    lab.add_server_address("192.0.2.51")
    lab.dns.set_records("moving.example.test", "A", ["192.0.2.50"], 2)
    sandbox = short_ttl_runtad.create_sandbox()
    assert sandbox.post("allow", ["moving.example.test"]).status_code == 200
    assert "192.0.2.50" in element_timeouts(sandbox)

    lab.dns.set_records("moving.example.test", "A", ["192.0.2.51"], 2)
    assert wait_for(lambda: "192.0.2.51" in element_timeouts(sandbox), timeout=8)


def test_unresolved_host_retried_until_it_resolves(short_ttl_runtad: RuntadProcess) -> None:
    lab = short_ttl_runtad.lab
    lab.add_server_address("192.0.2.52")
    sandbox = short_ttl_runtad.create_sandbox()
    assert sandbox.post("allow", ["late.example.test"]).status_code == 200
    rows = {row["host"]: row for row in sandbox.egress()["entries"]}
    assert rows["late.example.test"]["status"] == "unresolved"

    lab.dns.set_records("late.example.test", "A", ["192.0.2.52"], 60)
    assert wait_for(lambda: "192.0.2.52" in element_timeouts(sandbox), timeout=8)
    rows = {row["host"]: row for row in sandbox.egress()["entries"]}
    assert rows["late.example.test"]["status"] == "resolved"


def test_removed_host_leaves_the_sets(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org", "files.pythonhosted.org"]).status_code == 200
    assert "192.0.2.11" in element_timeouts(sandbox)
    assert sandbox.post("remove", ["files.pythonhosted.org"]).status_code == 200
    remaining = element_timeouts(sandbox)
    assert "192.0.2.11" not in remaining
    assert "2001:db8::11" not in remaining
    assert "192.0.2.10" in remaining


def test_remove_unknown_host_rejected(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    response = sandbox.post("remove", ["example.com"])
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "hosts[0]"
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org"]


def test_other_record_types_pass_through(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    lab.dns.set_records("pypi.org", "TXT", ['"v=spf1 -all"'], 300)
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    assert sandbox.post("enable").status_code == 200
    txt = sandbox.dig("+short", "pypi.org", "TXT")
    assert txt.stdout.strip() == '"v=spf1 -all"'
    denied_txt = sandbox.dig("example.com", "TXT")
    assert "status: NXDOMAIN" in denied_txt.stdout


def test_edns_passes_through(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    assert sandbox.post("enable").status_code == 200
    answer = sandbox.dig("+bufsize=1232", "pypi.org", "A")
    assert re.search(r"EDNS: version: 0, flags:; udp: \d+", answer.stdout), answer.stdout
    assert "192.0.2.10" in answer.stdout


def test_long_connection_outlives_element(short_ttl_runtad: RuntadProcess) -> None:
    import subprocess

    lab = short_ttl_runtad.lab
    lab.add_host("a.expiry.test", v4=["192.0.2.60"], ttl=2)
    sandbox = short_ttl_runtad.create_sandbox()
    assert sandbox.post("allow", ["*.expiry.test"]).status_code == 200
    assert sandbox.post("enable").status_code == 200
    download = sandbox.popen(
        ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", "http://a.expiry.test/slow?seconds=8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    # The element (TTL 2 s plus 1 s grace) leaves the set while the download runs.
    assert wait_for(lambda: "192.0.2.60" not in element_timeouts(sandbox), timeout=8)
    assert download.poll() is None
    out, err = download.communicate(timeout=30)
    assert download.returncode == 0, err
    assert out == "200"
    # A new connection after expiry goes to the gateway, which checks the name again.
    assert sandbox.curl("http://192.0.2.60/", "-H", "Host: a.expiry.test").stdout == "200"


def test_new_host_resolved_once(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    lab.add_server_address("192.0.2.70")
    lab.dns.set_records("once.example.test", "A", ["192.0.2.70"], 300)
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["once.example.test"]).status_code == 200
    time.sleep(1)
    asked = [query for query in lab.dns.queries() if query["qname"].lower().rstrip(".") == "once.example.test"]
    assert sorted(query["qtype"] for query in asked) == ["A", "AAAA"]
