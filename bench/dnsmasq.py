"""dnsmasq in two roles: a fast upstream answering from a hosts file, and the peer forwarder.

Neither reads /etc/dnsmasq.conf (-C /dev/null), writes a pid file or logs to syslog.
"""

from __future__ import annotations

from pathlib import Path

COMMON = ["dnsmasq", "-C", "/dev/null", "--keep-in-foreground", "--log-facility=-", "--pid-file=",
          "--user=root", "--group=root", "--bind-interfaces", "--no-resolv", "--no-hosts"]


def write_hosts_file(path: Path, records: list[tuple[str, str]]) -> Path:
    """Write (address, name) pairs in /etc/hosts format."""
    path.write_text("".join(f"{address} {name}\n" for address, name in records))
    return path


def upstream_argv(listen: str, hosts_file: Path, domain: str, ttl: int) -> list[str]:
    """Answer the names of hosts_file with the given TTL, NXDOMAIN for others under domain."""
    return COMMON + [
        f"--listen-address={listen}", f"--addn-hosts={hosts_file}", f"--local-ttl={ttl}",
        f"--local=/{domain}/",
    ]


def peer_argv(listen: str, upstream: str, domain: str, nftset: str) -> list[str]:
    """Forward every query to upstream and put the A answers for domain in an nftables set.

    The cache is off (--cache-size=0), so every query is forwarded and every answer goes
    through the set, the work runtad's proxy does for each query. nftset reads
    "4#inet#TABLE#SET" as in dnsmasq's --nftset option.
    """
    return COMMON + [
        f"--listen-address={listen}", f"--server={upstream}", "--cache-size=0",
        f"--nftset=/{domain}/{nftset}",
    ]
