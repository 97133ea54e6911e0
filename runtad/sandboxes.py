"""Network namespace lifecycle of sandboxes: create, adopt, repair and delete.

A created sandbox gets its own namespace, a veth pair to the daemon's namespace, one
/30 and one /64 from the configured pools (host side .1 / ::1, sandbox side .2 / ::2)
and default routes through the host side. An adopted namespace is left as it is except
for loopback being up, which the DNS listener needs. Every create step has its inverse
in delete_created.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from .errors import RuntadError
from .netns import NETNS_RUN_DIR, call_in_netns, netns_exists

ETC_NETNS = Path("/etc/netns")
SANDBOX_INTERFACE = "eth0"
HOST_INTERFACE_PREFIX = "rth"
HOST_INTERFACE_GLOB = HOST_INTERFACE_PREFIX + "*"


class PoolExhaustedError(RuntadError):
    code = "pool_exhausted"
    status = 503

    def __init__(self, pool: str) -> None:
        super().__init__(
            f"address pool {pool} has no free subnet: delete unused sandboxes"
            " or widen ipv4_pool and ipv6_pool in the settings"
        )
        self.pool = pool


@dataclass(frozen=True)
class SandboxAddresses:
    """The two ends of a created sandbox's veth pair, in both address families."""

    host4: ipaddress.IPv4Interface
    sandbox4: ipaddress.IPv4Interface
    host6: ipaddress.IPv6Interface
    sandbox6: ipaddress.IPv6Interface

    @classmethod
    def for_slot(cls, slot: int, ipv4_pool: str, ipv6_pool: str) -> "SandboxAddresses":
        pool4 = ipaddress.IPv4Network(ipv4_pool)
        pool6 = ipaddress.IPv6Network(ipv6_pool)
        if slot >= max_slots(ipv4_pool, ipv6_pool):
            raise PoolExhaustedError(ipv4_pool)
        base4 = int(pool4.network_address) + 4 * slot
        base6 = int(pool6.network_address) + (slot << 64)
        return cls(
            host4=ipaddress.IPv4Interface((base4 + 1, 30)),
            sandbox4=ipaddress.IPv4Interface((base4 + 2, 30)),
            host6=ipaddress.IPv6Interface((base6 + 1, 64)),
            sandbox6=ipaddress.IPv6Interface((base6 + 2, 64)),
        )


def max_slots(ipv4_pool: str, ipv6_pool: str) -> int:
    pool4 = ipaddress.IPv4Network(ipv4_pool)
    pool6 = ipaddress.IPv6Network(ipv6_pool)
    return min(pool4.num_addresses // 4, 1 << max(0, 64 - pool6.prefixlen))


def free_slot(used: set[int], ipv4_pool: str, ipv6_pool: str) -> int:
    for slot in range(max_slots(ipv4_pool, ipv6_pool)):
        if slot not in used:
            return slot
    raise PoolExhaustedError(ipv4_pool)


def host_interface_name(slot: int) -> str:
    return f"{HOST_INTERFACE_PREFIX}{slot}"


def netns_path_for(netns_name: str) -> Path:
    return NETNS_RUN_DIR / netns_name


def create_sandbox_netns(netns_name: str, slot: int, addresses: SandboxAddresses) -> Path:
    """Create the namespace, veth pair, addresses and routes; undo all of it on failure."""
    path = netns_path_for(netns_name)
    # The slot is free in the store, so a link of its name is left from a crash.
    stale = _host_link_index(host_interface_name(slot))
    if stale is not None:
        with IPRoute() as ipr:
            ipr.link("del", index=stale)
    pyroute2_netns.create(netns_name)
    try:
        _create_veth(path, slot, addresses)
        call_in_netns(path, lambda: _configure_sandbox_side(slot, addresses))
        _write_etc_netns(netns_name, addresses)
    except BaseException:
        delete_created(netns_name, slot)
        raise
    return path


def is_created(netns_name: str, slot: int) -> bool:
    """Tell whether a created sandbox's namespace and host-side link both exist."""
    return netns_exists(netns_path_for(netns_name)) and _host_link_index(host_interface_name(slot)) is not None


def ensure_created(netns_name: str, slot: int, addresses: SandboxAddresses) -> bool:
    """Repair a created sandbox whose namespace or link is gone. Returns whether it acted."""
    if is_created(netns_name, slot):
        return False
    delete_created(netns_name, slot)
    create_sandbox_netns(netns_name, slot, addresses)
    return True


def delete_created(netns_name: str, slot: int) -> None:
    """Remove a created sandbox's namespace, veth pair and /etc/netns files, if present."""
    index = _host_link_index(host_interface_name(slot))
    if index is not None:
        with IPRoute() as ipr:
            ipr.link("del", index=index)
    if netns_exists(netns_path_for(netns_name)):
        pyroute2_netns.remove(netns_name)
    shutil.rmtree(ETC_NETNS / netns_name, ignore_errors=True)


def prepare_adopted(path: Path) -> None:
    """Bring loopback up in an adopted namespace; nothing else there is runtad's."""
    call_in_netns(path, _loopback_up)


def _host_link_index(name: str) -> int | None:
    # if_nametoindex is one ioctl in the caller's namespace (the daemon's), far cheaper
    # than an IPRoute socket per lookup, which a restart does once per sandbox.
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _create_veth(path: Path, slot: int, addresses: SandboxAddresses) -> None:
    host_name = host_interface_name(slot)
    peer_name = f"rts{slot}"
    with IPRoute() as ipr:
        ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name})
        host_index = ipr.link_lookup(ifname=host_name)[0]
        peer_index = ipr.link_lookup(ifname=peer_name)[0]
        ipr.link("set", index=peer_index, net_ns_fd=str(path))
        ipr.addr("add", index=host_index, address=str(addresses.host4.ip), prefixlen=30)
        ipr.addr(
            "add",
            index=host_index,
            address=str(addresses.host6.ip),
            prefixlen=64,
            flags=0x02,  # IFA_F_NODAD from linux/if_addr.h: usable at once
        )
        ipr.link("set", index=host_index, state="up")
    _enable_forwarding()


def _configure_sandbox_side(slot: int, addresses: SandboxAddresses) -> None:
    with IPRoute() as ipr:
        _set_loopback_up(ipr)
        index = ipr.link_lookup(ifname=f"rts{slot}")[0]
        ipr.link("set", index=index, ifname=SANDBOX_INTERFACE)
        ipr.addr("add", index=index, address=str(addresses.sandbox4.ip), prefixlen=30)
        ipr.addr("add", index=index, address=str(addresses.sandbox6.ip), prefixlen=64, flags=0x02)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=str(addresses.host4.ip))
        ipr.route("add", dst="::/0", gateway=str(addresses.host6.ip), family=10)


def _loopback_up() -> None:
    with IPRoute() as ipr:
        _set_loopback_up(ipr)


def _set_loopback_up(ipr: IPRoute) -> None:
    index = ipr.link_lookup(ifname="lo")[0]
    ipr.link("set", index=index, state="up")


def _enable_forwarding() -> None:
    # /proc/sys/net belongs to the namespace of the writing task: the daemon's own.
    for key in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        Path("/proc/sys", key).write_text("1\n")


def _write_etc_netns(netns_name: str, addresses: SandboxAddresses) -> None:
    """Give the sandbox its own resolv.conf and hosts, which `ip netns exec` bind-mounts.

    Every port-53 packet of the sandbox reaches runtad's DNS listener, whatever server it
    is addressed to. Naming the host side only makes that obvious to someone reading it.
    """
    directory = ETC_NETNS / netns_name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "resolv.conf").write_text(f"nameserver {addresses.host4.ip}\n")
    (directory / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
