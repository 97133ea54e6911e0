"""nftables as the benchmarks see it: the nft command run inside a namespace."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from tests.lab.netns import netns_argv

NFT = "nft"
# Elements per "add element" statement in a file handed to nft -f.
ELEMENTS_PER_STATEMENT = 1000


class NftCommandError(Exception):
    """An nft command run by the benchmark failed."""

    def __init__(self, netns: str, argv: list[str], stderr: str) -> None:
        super().__init__(f"nft failed in namespace {netns} ({' '.join(argv)}): {stderr.strip()[-500:]}")
        self.netns = netns
        self.argv = argv


def run_nft(netns: str, args: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [NFT, *args]
    completed = subprocess.run(netns_argv(netns, argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and completed.returncode != 0:
        raise NftCommandError(netns, argv, completed.stderr)
    return completed


def set_elements(netns: str, table: str, set_name: str, family: str = "inet") -> set[str]:
    """Return the addresses in a set (nft -j list set), as normalized text."""
    output = run_nft(netns, ["-j", "list", "set", family, table, set_name]).stdout
    addresses: set[str] = set()
    for item in json.loads(output)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            value = element["elem"]["val"] if isinstance(element, dict) and "elem" in element else element
            addresses.add(str(ipaddress.ip_address(value)))
    return addresses


def table_exists(netns: str, table: str, family: str = "inet") -> bool:
    return run_nft(netns, ["list", "table", family, table], check=False).returncode == 0


def delete_table(netns: str, table: str, family: str = "inet") -> None:
    run_nft(netns, ["delete", "table", family, table])


def add_elements(netns: str, work_file: Path, table: str, set_name: str, addresses: list[str], timeout_seconds: int) -> None:
    """Add addresses with a timeout to a set in one nft -f transaction."""
    statements = []
    for start in range(0, len(addresses), ELEMENTS_PER_STATEMENT):
        chunk = addresses[start : start + ELEMENTS_PER_STATEMENT]
        elements = ", ".join(f"{address} timeout {timeout_seconds}s" for address in chunk)
        statements.append(f"add element inet {table} {set_name} {{ {elements} }}\n")
    work_file.write_text("".join(statements))
    run_nft(netns, ["-f", str(work_file)])
