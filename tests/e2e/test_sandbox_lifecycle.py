"""Sandboxes through the CLI: create, adopt, exec without CAP_NET_ADMIN, delete."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.e2e.runtad_process import CLEAN_PATH, RuntadProcess

pytestmark = pytest.mark.root


def exec_in(runtad: RuntadProcess, name: str, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["sandbox", "exec", name]
    if user is not None:
        prefix += ["--user", user]
    return runtad.cli(*prefix, "--", "env", "-i", f"PATH={CLEAN_PATH}", *argv)


def test_create_list_delete(runtad: RuntadProcess) -> None:
    created = runtad.cli("sandbox", "create", "life1", "--json")
    assert created.returncode == 0, created.stderr
    runtime = json.loads(created.stdout)
    netns = Path(runtime["netns"])
    assert netns.exists()
    listed = json.loads(runtad.cli("sandbox", "list", "--json").stdout)
    assert "life1" in [item["name"] for item in listed["items"]]

    deleted = runtad.cli("sandbox", "delete", "life1")
    assert deleted.returncode == 0, deleted.stderr
    assert not netns.exists()
    assert not Path("/etc/netns", netns.name).exists()
    links = subprocess.run(["ip", "-n", runtad.lab.host_netns, "-o", "link"], capture_output=True, text=True)
    assert runtime["host_interface"] not in links.stdout


def test_sandbox_has_both_families(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    addresses = sandbox.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout
    routes4 = sandbox.run(["ip", "route"]).stdout
    routes6 = sandbox.run(["ip", "-6", "route"]).stdout
    assert "10.213." in addresses
    assert "fd72:756e:7461:" in addresses
    assert routes4.startswith("default via 10.213.")
    assert "default via fd72:756e:7461:" in routes6


def test_duplicate_name_rejected(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    again = runtad.cli("sandbox", "create", sandbox.name)
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_invalid_name_rejected(runtad: RuntadProcess) -> None:
    result = runtad.cli("sandbox", "create", "Bad/Name")
    assert result.returncode == 1
    assert "invalid sandbox name" in result.stderr


def test_unknown_sandbox_error_names_fix(runtad: RuntadProcess) -> None:
    result = runtad.cli("egress", "enable", "nosuch")
    assert result.returncode == 1
    assert "'nosuch' not found" in result.stderr
    assert "runta sandbox create nosuch" in result.stderr


def test_adopt_existing_netns_and_delete_keeps_it(runtad: RuntadProcess) -> None:
    name = f"{runtad.netns_prefix}adopted"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        created = runtad.cli("sandbox", "create", "adopt1", "--netns", name, "--json")
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["adopted"] is True
        assert runtad.cli("egress", "enable", "adopt1").returncode == 0
        table = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "table", "inet", "runta"],
                               capture_output=True, text=True)
        assert "goto deny" in table.stdout

        assert runtad.cli("sandbox", "delete", "adopt1").returncode == 0
        assert Path("/run/netns", name).exists()
        after = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "tables"], capture_output=True, text=True)
        assert "runta" not in after.stdout
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_adopt_missing_netns_rejected(runtad: RuntadProcess) -> None:
    result = runtad.cli("sandbox", "create", "adopt2", "--netns", "no-such-netns-here")
    assert result.returncode == 1
    assert "not found" in result.stderr


def test_exec_cannot_change_enforcement(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert runtad.cli("egress", "enable", sandbox.name).returncode == 0
    attempts = [
        ["nft", "flush", "ruleset"],
        ["nft", "delete", "table", "inet", "runta"],
        ["nft", "add", "element", "inet", "runta", "allow4", "{ 198.51.100.7 }"],
        ["ip", "link", "set", "eth0", "down"],
        ["ip", "route", "replace", "default", "via", "10.213.0.1"],
    ]
    for argv in attempts:
        result = exec_in(runtad, sandbox.name, *argv)
        assert result.returncode != 0, (argv, result.stdout)
    table = sandbox.kernel_set()
    assert "goto deny" in table
    assert sandbox.curl("http://198.51.100.7/").returncode == 56  # reset by the gateway


def test_exec_as_user_runs_client(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert sandbox.post("allow", ["pypi.org"]).status_code == 200
    assert sandbox.post("enable").status_code == 200
    who = exec_in(runtad, sandbox.name, "id", "-un", user="nobody")
    assert who.stdout.strip() == "nobody", who.stderr
    # The lab keeps its CA in a root-only directory; nobody needs a readable copy.
    shared = Path(tempfile.mkdtemp(prefix="runta-ca-"))
    try:
        shared.chmod(0o755)
        ca = shared / "ca.pem"
        shutil.copy(runtad.lab.ca_cert_path, ca)
        ca.chmod(0o644)
        fetched = exec_in(runtad, sandbox.name, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                          "--cacert", str(ca), "https://pypi.org/", user="nobody")
    finally:
        shutil.rmtree(shared)
    assert fetched.stdout == "200", fetched.stderr


def test_table_shows_hosts_and_expiry(runtad: RuntadProcess) -> None:
    sandbox = runtad.create_sandbox()
    assert runtad.cli("egress", "allow", sandbox.name, "pypi.org", "*.pythonhosted.org").returncode == 0
    assert runtad.cli("egress", "enable", sandbox.name).returncode == 0
    table = runtad.cli("egress", "table", sandbox.name)
    assert table.returncode == 0, table.stderr
    assert "enforcement: on" in table.stdout
    rows = [line.split() for line in table.stdout.splitlines()]
    pypi_rows = [row for row in rows if row and row[0] == "pypi.org"]
    assert {row[3] for row in pypi_rows} == {"192.0.2.10", "2001:db8::10"}
    assert all(row[1] == "exact" for row in pypi_rows)
    assert any(row[:2] == ["*.pythonhosted.org", "wildcard"] for row in rows)

    as_json = json.loads(runtad.cli("egress", "table", sandbox.name, "--json").stdout)
    assert as_json["enabled"] is True
    assert as_json["entries"][0]["addresses"][0]["expires_at"].endswith("Z")
