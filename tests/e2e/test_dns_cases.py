"""DNS answers and the allow sets: TTLs, rotation, truncation, case and trailing dots."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle

pytestmark = pytest.mark.root

CONNECT = """
import json, socket, sys
results = {}
for address in sys.argv[1:]:
    try:
        socket.create_connection((address, 80), timeout=2).close()
        results[address] = "ok"
    except OSError as error:
        results[address] = str(error)
print(json.dumps(results))
"""


def enforced(runtad: RuntadProcess, hosts: list[str]) -> SandboxHandle:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", hosts).status_code == 200
    assert sandbox.post("enable").status_code == 200
    return sandbox


def element_timeouts(sandbox: SandboxHandle) -> dict[str, int]:
    """Return address → seconds until expiry, read from the kernel set."""
    completed = subprocess.run(
        ["ip", "netns", "exec", sandbox.netns, "nft", "-j", "list", "table", "inet", "runta"],
        capture_output=True, text=True, check=True, timeout=10,
    )
    remaining: dict[str, int] = {}
    for item in json.loads(completed.stdout)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, dict):
                remaining[element["elem"]["val"]] = element["elem"]["expires"]
    return remaining


def test_deleted_element_comes_back_with_next_answer(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    assert sandbox.dig("+short", "pypi.org").stdout.split() == ["192.0.2.10"]
    subprocess.run(
        ["ip", "netns", "exec", sandbox.netns, "nft", "delete", "element", "inet", "runta", "allow4", "{ 192.0.2.10 }"],
        check=True, timeout=10,
    )
    assert sandbox.curl("http://192.0.2.10/").returncode == 56  # reset by the gateway
    assert sandbox.dig("+short", "pypi.org").stdout.split() == ["192.0.2.10"]
    assert sandbox.curl("http://192.0.2.10/").stdout == "200"


def test_each_address_keeps_its_own_expiry(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    for address in ("192.0.2.30", "192.0.2.31"):
        lab.add_server_address(address)
    lab.dns.set_records("ttl.example.test", "A", [("192.0.2.30", 60), ("192.0.2.31", 600)])
    sandbox = enforced(runtad, ["*.example.test"])
    sandbox.dig("ttl.example.test")
    first = element_timeouts(sandbox)
    assert 60 <= first["192.0.2.30"] <= 66
    assert 600 <= first["192.0.2.31"] <= 606


def test_shorter_ttl_never_shortens_element(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    lab.add_server_address("192.0.2.32")
    lab.dns.set_records("shrink.example.test", "A", ["192.0.2.32"], 600)
    sandbox = enforced(runtad, ["*.example.test"])
    sandbox.dig("shrink.example.test")
    lab.dns.set_records("shrink.example.test", "A", ["192.0.2.32"], 10)
    sandbox.dig("shrink.example.test")
    assert element_timeouts(sandbox)["192.0.2.32"] >= 590


def test_rotating_answers_all_connectable(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    pool = [f"192.0.2.{index}" for index in range(100, 140)]
    for address in pool:
        lab.add_server_address(address)
    lab.add_web_server(pool[0], ["files.rotate.test"], https_port=None)
    for address in pool[1:]:
        lab.add_web_server(address, ["files.rotate.test"], https_port=None)
    lab.dns.set_rotation("files.rotate.test", pool, per_answer=2, ttl=30)
    sandbox = enforced(runtad, ["files.rotate.test"])
    probe = (
        "import json, socket\n"
        "failures = []\n"
        "for _ in range(40):\n"
        "    address = socket.getaddrinfo('files.rotate.test', 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]\n"
        "    try:\n"
        "        socket.create_connection((address, 80), timeout=2).close()\n"
        "    except OSError as error:\n"
        "        failures.append((address, str(error)))\n"
        "print(json.dumps(failures))\n"
    )
    result = sandbox.python(probe, timeout=120)
    assert json.loads(result.stdout) == [], result.stderr


def test_truncated_udp_then_tcp_fills_every_address(runtad: RuntadProcess) -> None:
    lab = runtad.lab
    addresses = [f"203.0.113.{index}" for index in range(100, 140)]
    for address in addresses:
        lab.add_server_address(address)
    lab.add_web_server(addresses[-1], ["many.example.test"], https_port=None)
    lab.dns.set_records("many.example.test", "A", addresses, 300)
    sandbox = enforced(runtad, ["many.example.test"])

    udp = sandbox.dig("+notcp", "+noedns", "+ignore", "many.example.test")
    assert re.search(r"flags:[^;]*\btc\b", udp.stdout), udp.stdout
    tcp = sandbox.dig("+tcp", "+short", "many.example.test")
    assert sorted(tcp.stdout.split()) == sorted(addresses)
    assert sandbox.curl(f"http://{addresses[-1]}/").stdout == "200"


def test_dns_over_tcp_to_other_address_redirected(runtad: RuntadProcess) -> None:
    sandbox = enforced(runtad, ["pypi.org"])
    allowed = sandbox.dig("+tcp", "@203.0.113.53", "+short", "pypi.org")
    denied = sandbox.dig("+tcp", "@203.0.113.53", "example.com")
    assert allowed.stdout.split() == ["192.0.2.10"]
    assert "status: NXDOMAIN" in denied.stdout


def test_mixed_case_policy_and_query(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    result = runtad.cli("egress", "allow", sandbox.name, "Pypi.ORG")
    assert result.returncode == 0, result.stderr
    assert sandbox.post("enable").status_code == 200
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org"]
    assert sandbox.dig("+short", "pYpI.oRg").stdout.split() == ["192.0.2.10"]
    assert sandbox.curl("https://PyPI.org/").stdout == "200"


def test_trailing_dot_everywhere(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    result = runtad.cli("egress", "allow", sandbox.name, "pypi.org.", "*.pythonhosted.org")
    assert result.returncode == 0, result.stderr
    assert sandbox.post("enable").status_code == 200
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org", "*.pythonhosted.org"]
    assert sandbox.curl("https://pypi.org./").stdout == "200"
    assert sandbox.curl("https://files.pythonhosted.org./").stdout == "200"
    assert sandbox.curl("https://example.com./").returncode == 6


@pytest.mark.parametrize(
    "entry", ["*", "*.", "**.org", "*pythonhosted.org", "files*.pythonhosted.org", "a.*.org", "*.org",
              "*.co.uk", " pypi.org ", "pypi..org", "pypi.org/", ".", ".pythonhosted.org",
              "pypi.org:443", "https://pypi.org", "pypi.org/simple", "pypi.org?x=1",
              "https://pypi.org@evil.test/", "192.0.2.10", "[2001:db8::1]"],
)
def test_cli_rejects_entry_and_changes_nothing(runtad: RuntadProcess, entry: str) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    before = sandbox.egress()
    result = runtad.cli("egress", "allow", sandbox.name, "files.pythonhosted.org", entry)
    assert result.returncode == 1
    assert result.stderr.startswith("runta: error:")
    assert sandbox.egress()["version"] == before["version"]
    assert sandbox.egress()["allowed_hosts"] == ["pypi.org"]


def test_cli_url_error_shows_bare_host(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    for entry in ("https://pypi.org/simple", "pypi.org:443", "pypi.org/simple", "pypi.org?x=1"):
        result = runtad.cli("egress", "allow", sandbox.name, entry)
        assert "'pypi.org'" in result.stderr, (entry, result.stderr)


def test_public_suffix_wildcard_with_force(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    refused = runtad.cli("egress", "allow", sandbox.name, "*.co.uk")
    forced = runtad.cli("egress", "allow", sandbox.name, "*.co.uk", "--force")
    assert refused.returncode == 1
    assert "force" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert sandbox.egress()["allowed_hosts"] == ["*.co.uk"]


def test_upstream_failure_during_enable_stays_enforced(own_runtad: RuntadProcess) -> None:
    lab = own_runtad.lab
    sandbox = own_runtad.create_sandbox()
    lab.dns.set_global_mode("servfail")
    try:
        assert sandbox.post("allow", ["pypi.org", "no-such-host.invalid"]).status_code == 200
        assert sandbox.post("enable").status_code == 200
        rows = {row["host"]: row for row in sandbox.egress()["entries"]}
        assert rows["pypi.org"]["status"] == "unresolved"
        assert sandbox.curl("https://example.com/").returncode == 6
        assert sandbox.curl("http://198.51.100.7/").returncode == 56  # reset by the gateway
        assert "status: SERVFAIL" in sandbox.dig("pypi.org").stdout
    finally:
        lab.dns.set_global_mode("answer")
    # Once the upstream answers again, the sandbox's own lookup fills the set.
    assert sandbox.curl("https://pypi.org/").stdout == "200"
    assert sandbox.curl("https://example.com/").returncode == 6


def test_allow_returns_with_addresses_in_kernel(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    response = sandbox.post("allow", ["pypi.org"])
    assert response.status_code == 200
    timeouts = element_timeouts(sandbox)
    assert "192.0.2.10" in timeouts
    assert "2001:db8::10" in timeouts
