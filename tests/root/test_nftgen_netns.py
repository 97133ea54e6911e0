"""The nftables generation ID reader, and the set writer with it, in a real namespace."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtad.addressbook import AddressBook, Learned
from runtad.nft import NftContext
from runtad.nftgen import GenerationReader
from runtad.setwriter import SetWriter

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

COMMAND_TIMEOUT = 10
# The allow sets as the sandbox ruleset names them (runtad.ruleset), without its chains.
SETS = """
table inet runta {
  set allow4 { type ipv4_addr; flags timeout; }
  set allow6 { type ipv6_addr; flags timeout; }
}
"""


@pytest.fixture
def netns() -> Iterator[Path]:
    name = f"rtg-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=COMMAND_TIMEOUT)
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"], input=SETS, text=True, check=True,
            timeout=COMMAND_TIMEOUT,
        )  # fmt: skip
        yield Path("/run/netns", name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=COMMAND_TIMEOUT)


def nft(netns: Path, *argv: str) -> str:
    completed = subprocess.run(
        ["ip", "netns", "exec", netns.name, "nft", *argv], capture_output=True, text=True, check=True,
        timeout=COMMAND_TIMEOUT,
    )
    return completed.stdout


def kernel_elements(netns: Path) -> set[str]:
    output = json.loads(nft(netns, "-j", "list", "set", "inet", "runta", "allow4"))
    found: set[str] = set()
    for item in output["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            found.add(element["elem"]["val"] if isinstance(element, dict) else element)
    return found


def test_generation_counts_transactions(netns: Path) -> None:
    reader = GenerationReader.open(netns)
    try:
        before = reader.read()
        nft(netns, "add", "table", "inet", "other")
        after_write = reader.read()
        nft(netns, "list", "ruleset")
        after_list = reader.read()
    finally:
        reader.close()
    assert after_write == before + 1
    assert after_list == after_write


def test_writer_restores_deleted_element(netns: Path) -> None:
    async def scenario() -> tuple[int, set[str]]:
        context = NftContext.open(netns)
        reader = GenerationReader.open(netns)
        writer = SetWriter("sandbox-a", AddressBook(), context.run_async, slack=2.5)
        writer.watch_generation(reader)
        try:
            await writer.learn([Learned("192.0.2.10", 305, "pypi.org", "dns")])
            await writer.learn([Learned("192.0.2.10", 305, "pypi.org", "dns")])
            transactions_in_sync = writer.stats["transactions"]
            nft(netns, "delete", "element", "inet", "runta", "allow4", "{ 192.0.2.10 }")
            await writer.learn([Learned("192.0.2.10", 305, "pypi.org", "dns")])
            return transactions_in_sync, kernel_elements(netns)
        finally:
            await writer.close()

    transactions_in_sync, elements = asyncio.run(scenario())
    assert transactions_in_sync == 1
    assert elements == {"192.0.2.10"}


def element_expiry(netns: Path, address: str) -> int:
    """Return the seconds until the element for address expires, as the kernel reports them."""
    output = json.loads(nft(netns, "-j", "list", "set", "inet", "runta", "allow4"))
    for item in output["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            if isinstance(element, dict) and element["elem"]["val"] == address:
                return int(element["elem"]["expires"])
    raise AssertionError(f"{address} is not in allow4")


def test_plain_readd_keeps_expiry(netns: Path) -> None:
    async def scenario() -> tuple[int, int]:
        context = NftContext.open(netns)
        writer = SetWriter("sandbox-a", AddressBook(), context.run_async, slack=2.5)
        try:
            await writer.learn([Learned("192.0.2.10", 600, "pypi.org", "dns")])
            # Covered, and without a generation reader: added again without the refresh.
            await writer.learn([Learned("192.0.2.10", 30, "pypi.org", "dns")])
            return writer.stats["transactions"], element_expiry(netns, "192.0.2.10")
        finally:
            await writer.close()

    transactions, expiry = asyncio.run(scenario())
    assert transactions == 2
    assert expiry >= 590
