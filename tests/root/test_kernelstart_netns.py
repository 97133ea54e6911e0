"""A sandbox's kernel start pass (kernelstart.start_in_netns) in a namespace of the test's own."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad import ruleset
from runtad.kernelstart import KernelStart, build_set_list, start_in_netns
from runtad.nflog import NflogBindError
from runtad.nft import NftContext, NftError
from runtad.nftpool import NftPool

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

COMMAND_TIMEOUT = 10
OPTIONS = ruleset.SandboxRulesetOptions(enabled=True, dns_port=53053, log_group=7, log_rate=10, log_burst=5)


@pytest.fixture
def netns() -> Iterator[Path]:
    name = f"rt-ks-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=COMMAND_TIMEOUT)
    try:
        yield Path("/run/netns") / name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=COMMAND_TIMEOUT)


def ruleset_commands() -> list[dict]:
    return ruleset.build_sandbox_ruleset(ruleset.load_template(ruleset.SANDBOX_TEMPLATE), OPTIONS)


def run_start(netns: Path, commands: list[dict], keep_reader: bool = False) -> KernelStart:
    """Run the start pass through a pool of its own; close the reader unless keep_reader."""
    pool = NftPool(capacity=1)
    handle = pool.handle(netns, os.stat(netns).st_ino)
    try:
        started = asyncio.run(handle.call_in_netns(lambda context: start_in_netns(context, netns, commands)))
    finally:
        pool.close()
    if started.generation_reader is not None and not keep_reader:
        started.generation_reader.close()
    return started


def nft_text(netns: Path, *arguments: str) -> str:
    command = ["ip", "netns", "exec", netns.name, "nft", *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT).stdout


def loose_pickup(netns: Path) -> str:
    command = ["ip", "netns", "exec", netns.name, "sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT).stdout.strip()


def test_start_creates_table(netns: Path) -> None:
    started = run_start(netns, ruleset_commands())

    assert started.remaining == {}
    assert "chain output" in nft_text(netns, "list", "table", "inet", "runta")


def test_start_keeps_elements(netns: Path) -> None:
    commands = ruleset_commands()
    context = NftContext.open(netns)
    try:
        context.run(commands)
        context.run(ruleset.build_element_add([("192.0.2.10", 300), ("2001:db8::10", 200)], refresh=False))
    finally:
        context.try_close()

    started = run_start(netns, commands)

    assert set(started.remaining) == {"192.0.2.10", "2001:db8::10"}
    assert 0 < started.remaining["192.0.2.10"] <= 300
    assert 0 < started.remaining["2001:db8::10"] <= 200


def test_start_disables_loose_pickup(netns: Path) -> None:
    run_start(netns, ruleset_commands())

    assert loose_pickup(netns) == "0"


def test_start_opens_generation_reader(netns: Path) -> None:
    started = run_start(netns, ruleset_commands(), keep_reader=True)

    assert started.generation_reader is not None
    assert started.generation_error is None
    try:
        assert started.generation_reader.read() > 0
    finally:
        started.generation_reader.close()


def test_start_rejected_ruleset_raises(netns: Path) -> None:
    broken = [{"add": {"chain": {"family": "inet", "table": "absent", "name": "output"}}}]

    with pytest.raises(NftError):
        run_start(netns, broken)


def test_set_list_matches_table_list(netns: Path) -> None:
    context = NftContext.open(netns)
    try:
        context.run(ruleset_commands())
        context.run(ruleset.build_element_add([("192.0.2.11", 300), ("2001:db8::11", 300)], refresh=False))
        table_list = [{"list": {"table": {"family": "inet", "name": ruleset.SANDBOX_TABLE}}}]
        from_table = ruleset.parse_set_elements(context.run(table_list))
        from_sets: dict[str, int] = {}
        for name in (ruleset.SET_IPV4, ruleset.SET_IPV6):
            from_sets.update(ruleset.parse_set_elements(context.run(build_set_list(name))))
    finally:
        context.try_close()

    assert set(from_sets) == set(from_table) == {"192.0.2.11", "2001:db8::11"}


def run_start_logging(netns: Path, group: int) -> KernelStart:
    """Run the start pass with a log group; close the generation reader."""
    pool = NftPool(capacity=1)
    handle = pool.handle(netns, os.stat(netns).st_ino)
    commands = ruleset_commands()
    try:
        started = asyncio.run(
            handle.call_in_netns(lambda context: start_in_netns(context, netns, commands, log_group=group))
        )
    finally:
        pool.close()
    if started.generation_reader is not None:
        started.generation_reader.close()
    return started


def test_start_binds_log_group(netns: Path) -> None:
    started = run_start_logging(netns, OPTIONS.log_group)
    assert started.log is not None and started.log.socket is not None
    try:
        assert started.log.socket.group == OPTIONS.log_group
        assert started.log.counters == {"log_suppressed": 0, "log_reached": 0}
        assert started.log.settled
    finally:
        started.log.socket.close()


def test_start_log_group_taken_keeps_start(netns: Path) -> None:
    first = run_start_logging(netns, OPTIONS.log_group)
    assert first.log is not None and first.log.socket is not None
    try:
        second = run_start_logging(netns, OPTIONS.log_group)
    finally:
        first.log.socket.close()
    assert second.log is not None and second.log.socket is None
    assert isinstance(second.log.open_error, NflogBindError)
    assert second.log.counters is not None


def test_start_without_log_group_opens_nothing(netns: Path) -> None:
    assert run_start(netns, ruleset_commands()).log is None
