"""Attempts from inside an enforced sandbox to change its enforcement.

Each command runs through `runta sandbox exec` as nobody, as root of a user namespace of
its own, and as the uid 0 that `runta sandbox exec` gives without --user. Afterwards the
sandbox's table must hold the same rules and set elements, its sysctls their values,
and its policy must be unchanged.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.runtad_process import RuntadProcess, SandboxHandle
from tests.hostile.attempts import (
    EXEC_SECONDS,
    FAST_SECONDS,
    enforced_sandbox,
    exec_in,
    nft_table,
    probe,
    rule_shape,
    runtime_document,
)

pytestmark = pytest.mark.root

CALLERS_AND_ROOT = ("nobody", "userns_root", "root")
SYSCTLS = {
    # Loose pick-up lets a revoked flow live on through the server's next segment.
    "net.netfilter.nf_conntrack_tcp_loose": "1",
    # Port 0 lets any user bind runtad's DNS (53) and gateway (1017) ports while it is down.
    "net.ipv4.ip_unprivileged_port_start": "0",
}


def tamper_commands(runtad: RuntadProcess, sandbox: SandboxHandle) -> dict[str, list[str]]:
    host_side = runtime_document(runtad, sandbox.name)["gateway"][0]
    return {
        "nft_flush": ["nft", "flush", "ruleset"],
        "nft_delete_table": ["nft", "delete", "table", "inet", "runta"],
        "nft_flush_chain": ["nft", "flush", "chain", "inet", "runta", "output"],
        "nft_add_element": ["nft", "add", "element", "inet", "runta", "allow4",
                            "{ 198.51.100.7 timeout 1h }"],
        "nft_policy_accept": ["nft", "add", "rule", "inet", "runta", "output", "accept"],
        "link_down": ["ip", "link", "set", "eth0", "down"],
        "link_to_other_netns": ["ip", "link", "set", "eth0", "netns", runtad.lab.inet_netns],
        "route_replace": ["ip", "route", "replace", "198.51.100.7/32", "via", host_side],
        "address_add": ["ip", "address", "add", "198.51.100.99/32", "dev", "eth0"],
    }  # fmt: skip


def sysctl_value(sandbox: SandboxHandle, key: str) -> str:
    completed = subprocess.run(
        ["ip", "netns", "exec", sandbox.netns, "sysctl", "-n", key],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return completed.stdout.strip()


@pytest.mark.parametrize("caller", CALLERS_AND_ROOT)
def test_enforcement_commands_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    rules_before = rule_shape(sandbox.netns)
    sets_before = nft_table(sandbox.netns)["sets"]
    commands = tamper_commands(runtad, sandbox)

    results = {
        label: exec_in(runtad, sandbox.name, caller, argv) for label, argv in commands.items()
    }

    refused = {label: result.returncode != 0 for label, result in results.items()}
    assert refused == dict.fromkeys(commands, True)
    for label, result in results.items():
        assert "Operation not permitted" in result.stderr, f"{label}: {result.stderr}"
    assert max(result.seconds for result in results.values()) < EXEC_SECONDS
    assert rule_shape(sandbox.netns) == rules_before
    assert nft_table(sandbox.netns)["sets"] == sets_before
    denied = probe(runtad, sandbox.name, "nobody", "tcp", "198.51.100.7", "8080")
    assert denied.outcome == "ECONNREFUSED"
    assert denied.seconds < FAST_SECONDS


@pytest.mark.parametrize(
    "caller",
    [
        "nobody",
        "userns_root",
        "root",
    ],
)
@pytest.mark.parametrize("key", list(SYSCTLS))
def test_net_sysctl_rejected(runtad: RuntadProcess, caller: str, key: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    before = sysctl_value(sandbox, key)

    result = exec_in(runtad, sandbox.name, caller, ["sysctl", "-w", f"{key}={SYSCTLS[key]}"])

    assert sysctl_value(sandbox, key) == before
    assert result.returncode != 0
    assert "permission denied" in result.stderr or "Read-only file system" in result.stderr


@pytest.mark.parametrize(
    "caller",
    [
        "nobody",
        "userns_root",
        "root",
    ],
)
def test_api_socket_rejected(runtad: RuntadProcess, caller: str) -> None:
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    url = f"http://runtad/v1/runtimes/{sandbox.name}/egress/disable"
    argv = ["curl", "-sS", "--max-time", "5", "--unix-socket", str(runtad.socket_path),
            "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", url]  # fmt: skip

    result = exec_in(runtad, sandbox.name, caller, argv)

    assert sandbox.egress()["enabled"] is True
    assert result.stdout.strip() in ("000", "403")


def test_api_socket_rejected_for_host_root(runtad: RuntadProcess) -> None:
    """Even the host's uid 0 (exec --host-root) is refused while it sits in a sandbox."""
    sandbox = enforced_sandbox(runtad, ["pypi.org"])
    url = f"http://runtad/v1/runtimes/{sandbox.name}/egress/disable"
    argv = ["curl", "-sS", "--max-time", "5", "--unix-socket", str(runtad.socket_path),
            "-X", "POST", url]  # fmt: skip

    result = exec_in(runtad, sandbox.name, "host_root", argv)

    assert sandbox.egress()["enabled"] is True
    assert '"forbidden"' in result.stdout
    assert sandbox.name in result.stdout
