"""The lab: a "host" namespace for runtad and a self-made "internet" namespace behind it.

::

    sandbox netns ── veth ── host netns (eth0) ══ veth ══ (eth0) inet netns
    (made by runtad)         203.0.113.2/24                203.0.113.1/24
                             2001:db8:ffff::2/64           2001:db8:ffff::1/64
                             default routes via inet       server addresses on lo

The host namespace forwards, and runtad masquerades sandbox traffic out of its
default route, so the inet namespace needs no route back to the sandbox pools.
Server addresses (the DNS server, the web sites) sit on the inet namespace's ``lo``:
this kernel has no ``dummy`` link type, and addresses on ``lo`` are just as local
and bindable. Nothing is connected to the machine's own interfaces.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.lab.dns_control import LabDns
from tests.lab.errors import AddressNotAllowedError, LabError, LabNotStartedError
from tests.lab.netns import IP, add_netns, delete_netns, netns_argv, netns_exists, run_checked
from tests.lab.processes import (
    REPO_ROOT,
    ProcessTracker,
    python_module_argv,
    server_env,
    wait_for_listeners,
)
from tests.lab.stale import record_owner, remove_owner
from tests.lab.tls import TestCa
from tests.lab.web_control import LabWeb

UPLINK_DEVICE = "eth0"
HOST_V4 = "203.0.113.2"
HOST_V6 = "2001:db8:ffff::2"
INET_V4 = "203.0.113.1"
INET_V6 = "2001:db8:ffff::1"
DNS_V4 = "198.51.100.53"
DNS_V6 = "2001:db8:53::53"

# Server addresses must come from the documentation ranges (RFC 5737, RFC 3849).
DOCUMENTATION_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)

# Seconds a lab server gets to start listening. Start-up took under 0.5 s in the self-test.
DEFAULT_STARTUP_TIMEOUT = 10.0


class Lab:
    """Two namespaces, a DNS server and web servers, used as ``with Lab() as lab:`` or start()/close()."""

    dns_address = DNS_V4
    dns_address_v6 = DNS_V6

    def __init__(
        self, *, prefix: str = "rtl-", startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    ) -> None:
        self.name = f"{prefix}{secrets.token_hex(3)}"
        self.host_netns = f"{self.name}-host"
        self.inet_netns = f"{self.name}-inet"
        self.startup_timeout = startup_timeout
        self.work_dir: Path | None = None
        self._created_netns: list[str] = []
        self._processes = ProcessTracker()
        self._server_addresses: set[str] = set()
        self._ca: TestCa | None = None
        self._dns: LabDns | None = None
        self._web: LabWeb | None = None

    # Life cycle

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Self:
        """Build the namespaces, the uplink, the CA and the DNS server.

        A failure part-way runs close() before the error propagates, so nothing is left.
        """
        if self.work_dir is not None:
            raise LabError(f"lab {self.name} is already started. Make a new Lab instead")
        try:
            record_owner(self.name)
            self.work_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
            self._create_namespaces()
            self._create_uplink()
            self._ca = TestCa.create(self.work_dir / "ca")
            self._start_dns()
        except BaseException as exc:
            try:
                self.close()
            except LabError as close_exc:
                exc.add_note(f"cleanup after the failed start also failed: {close_exc}")
            raise
        return self

    def close(self) -> None:
        """End every process the lab started, delete its namespaces and files.

        Safe to call twice and after a failed start. A namespace that cannot be
        deleted stays listed for the next call and its error is raised at the end.
        """
        self._processes.terminate_all()

        failures: list[LabError] = []
        remaining: list[str] = []
        for netns in reversed(self._created_netns):
            try:
                delete_netns(netns)
            except LabError as exc:
                failures.append(exc)
                remaining.append(netns)
        self._created_netns = remaining

        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None
        self._dns = None
        self._web = None
        self._ca = None
        self._server_addresses.clear()
        remove_owner(self.name)
        if failures:
            raise failures[0]

    def _create_namespaces(self) -> None:
        for netns in (self.host_netns, self.inet_netns):
            if netns_exists(netns):
                raise LabError(
                    f"namespace {netns} already exists, so another lab owns it. Make a new Lab"
                )
            self._created_netns.append(netns)
            add_netns(netns)
            run_checked([IP, "-n", netns, "link", "set", "lo", "up"])

        # DAD off: addresses are usable at once, including the link-local ones.
        no_dad = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
        forwarding = ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
        run_checked(netns_argv(self.host_netns, ["sysctl", "-q", "-w", *no_dad, *forwarding]))
        run_checked(netns_argv(self.inet_netns, ["sysctl", "-q", "-w", *no_dad]))

    def _create_uplink(self) -> None:
        host, inet = self.host_netns, self.inet_netns
        run_checked(
            [IP, "-n", host, "link", "add", UPLINK_DEVICE, "type", "veth",
             "peer", "name", UPLINK_DEVICE, "netns", inet]
        )  # fmt: skip
        for netns, v4, v6 in ((host, HOST_V4, HOST_V6), (inet, INET_V4, INET_V6)):
            run_checked([IP, "-n", netns, "link", "set", UPLINK_DEVICE, "up"])
            run_checked([IP, "-n", netns, "addr", "add", f"{v4}/24", "dev", UPLINK_DEVICE])
            run_checked([IP, "-n", netns, "addr", "add", f"{v6}/64", "dev", UPLINK_DEVICE, "nodad"])
        run_checked([IP, "-n", host, "route", "add", "default", "via", INET_V4])
        run_checked([IP, "-n", host, "-6", "route", "add", "default", "via", INET_V6])

    def _start_dns(self) -> None:
        assert self.work_dir is not None
        dns_dir = self.work_dir / "dns"
        dns_dir.mkdir()
        self.add_server_address(DNS_V4)
        self.add_server_address(DNS_V6)
        self._dns = LabDns(dns_dir / "zone.json", dns_dir / "queries.jsonl", DNS_V4, DNS_V6)

        argv = python_module_argv(
            "tests.lab.dns_server",
            "--config", str(self._dns.zone_path),
            "--query-log", str(self._dns.query_log_path),
            "--listen", DNS_V4,
            "--listen", DNS_V6,
        )  # fmt: skip
        log_path = dns_dir / "server.log"
        process = self._processes.spawn(
            netns_argv(self.inet_netns, argv), log_path=log_path, env=server_env(), cwd=REPO_ROOT
        )
        wait_for_listeners(
            server="lab DNS server",
            process=process,
            netns=self.inet_netns,
            endpoints=[(DNS_V4, 53), (DNS_V6, 53)],
            log_path=log_path,
            timeout=self.startup_timeout,
        )

    # Handles on the servers

    def _require_started(self, method: str) -> Path:
        if self.work_dir is None or not self._created_netns:
            raise LabNotStartedError(method)
        return self.work_dir

    @property
    def dns(self) -> LabDns:
        """The test DNS server's zone and query log."""
        self._require_started("dns")
        assert self._dns is not None
        return self._dns

    @property
    def ca_cert_path(self) -> Path:
        """The test CA certificate to pass to clients (``curl --cacert``)."""
        self._require_started("ca_cert_path")
        assert self._ca is not None
        return self._ca.cert_path

    @property
    def pids(self) -> list[int]:
        """Pids of the processes the lab started and has not ended yet."""
        return self._processes.pids

    def _web_servers(self) -> LabWeb:
        work_dir = self._require_started("add_web_server")
        assert self._ca is not None
        if self._web is None:
            self._web = LabWeb(
                netns=self.inet_netns,
                directory=work_dir / "web",
                ca=self._ca,
                processes=self._processes,
                startup_timeout=self.startup_timeout,
            )
        return self._web

    # The "internet"

    def add_server_address(self, address: str) -> str:
        """Put ``address`` (IPv4 as /32, IPv6 as /128) in the inet namespace and return it normalized.

        Adding an address twice is a no-op.
        """
        self._require_started("add_server_address")
        parsed = ipaddress.ip_address(address)
        if not any(parsed in network for network in DOCUMENTATION_NETWORKS):
            raise AddressNotAllowedError(
                address, "it is outside 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 "
                "and 2001:db8::/32; pick an address inside them"
            )  # fmt: skip
        if str(parsed) in (HOST_V4, HOST_V6, INET_V4, INET_V6):
            raise AddressNotAllowedError(address, "the uplink between the namespaces uses it")

        normalized = str(parsed)
        if normalized in self._server_addresses:
            return normalized
        if parsed.version == 4:
            run_checked([IP, "-n", self.inet_netns, "addr", "add", f"{normalized}/32", "dev", "lo"])
        else:
            run_checked(
                [IP, "-n", self.inet_netns, "addr", "add", f"{normalized}/128", "dev", "lo",
                 "nodad"]
            )  # fmt: skip
        self._server_addresses.add(normalized)
        return normalized

    def add_web_server(
        self,
        address: str,
        names: Sequence[str],
        *,
        http_port: int | None = 80,
        https_port: int | None = 443,
    ) -> None:
        """Serve HTTP and HTTPS on ``address`` with a certificate for ``names``.

        Calling it again for the same address adds names to its certificate. A port
        of None leaves that scheme out. Returns once the ports accept connections.
        """
        normalized = self.add_server_address(address)
        self._web_servers().add(normalized, names, http_port=http_port, https_port=https_port)

    def add_host(
        self,
        name: str,
        v4: Sequence[str] = (),
        v6: Sequence[str] = (),
        ttl: int = 300,
        *,
        web: bool = True,
    ) -> None:
        """Make ``name`` resolve to ``v4`` and ``v6`` and, with ``web``, serve it on each address.

        The web servers are listening before the DNS records appear, so a client that
        resolves the name can connect at once.
        """
        if not v4 and not v6:
            raise ValueError(f"add_host({name!r}) needs at least one address in v4 or v6")
        addresses = [self.add_server_address(address) for address in (*v4, *v6)]
        if web:
            self._web_servers().add_many(
                [(address, [name]) for address in addresses], http_port=80, https_port=443
            )
        if v4:
            self.dns.set_records(name, "A", list(v4), ttl)
        if v6:
            self.dns.set_records(name, "AAAA", list(v6), ttl)

    # Commands inside the namespaces

    def exec_in(
        self, netns: str, argv: Sequence[str], *, share_mounts: bool = False, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in ``netns`` (any named namespace, a sandbox's included) and wait.

        Defaults: output captured as text, a 60 s timeout, no check. Pass ``env`` to
        give clients a clean environment. ``share_mounts`` is explained in netns.py.
        """
        if "stdout" not in kwargs and "stderr" not in kwargs:
            kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        check = kwargs.pop("check", False)
        return subprocess.run(
            netns_argv(netns, argv, share_mounts=share_mounts), check=check, **kwargs
        )

    def spawn(
        self,
        netns: str,
        argv: Sequence[str],
        *,
        share_mounts: bool = False,
        log_path: Path | None = None,
        **popen_kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``netns``. close() ends it by pid (SIGTERM, then SIGKILL).

        Run runtad with ``share_mounts=True`` so namespaces it adds under /run/netns
        are visible to the tests.
        """
        self._require_started("spawn")
        return self._processes.spawn(
            netns_argv(netns, argv, share_mounts=share_mounts), log_path=log_path, **popen_kwargs
        )
