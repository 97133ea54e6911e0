"""Daemon settings: defaults, the TOML file, and command-line overrides.

Unknown keys are rejected at load time, because a misspelt setting that is silently
ignored leaves an operator believing in a limit that is not there.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .answerfilter import DEFAULT_DENIED_NETWORKS
from .errors import RuntadError

DEFAULT_CONFIG_PATH = Path("/etc/runta/runtad.toml")
DEFAULT_STATE_DIR = Path("/var/lib/runta")
DEFAULT_SOCKET_PATH = Path("/run/runta/runtad.sock")


LOG_LEVELS = ("debug", "info", "warning", "error")

# Settings that a reload (SIGHUP) applies to the running daemon. The others shape
# sockets, namespaces, addresses or kernel rulesets that exist already, so a change to
# them takes effect only at the next start.
RELOADABLE = frozenset({
    "log_level", "upstream_dns", "upstream_timeout", "min_ttl", "max_ttl", "ttl_grace",
    "resolve_wait", "retry_min", "retry_max",
})


class ConfigError(RuntadError):
    code = "invalid_config"
    status = 500


@dataclass
class Config:
    state_dir: Path = DEFAULT_STATE_DIR
    socket_path: Path = DEFAULT_SOCKET_PATH
    # Group admitted to the API socket besides root; created when missing.
    socket_group: str = "runta"
    # Upstream name servers as "ADDR" or "ADDR:PORT" ("[V6]:PORT"); empty means the
    # name servers of the daemon's own /etc/resolv.conf.
    upstream_dns: list[str] = field(default_factory=list)
    # Created sandboxes get the network namespace PREFIX + NAME under /run/netns.
    netns_prefix: str = "runta-"
    # Each created sandbox takes one /30 and one /64 from these pools.
    ipv4_pool: str = "10.213.0.0/16"
    ipv6_pool: str = "fd72:756e:7461::/48"
    # Port of the DNS listener inside every sandbox (on 127.0.0.1 and ::1). A port below
    # 1024 keeps unprivileged sandbox processes from binding it while runtad is down.
    dns_listen_port: int = 53
    # Per-sandbox DNS limits: queries per second on average (0: no limit), the burst
    # above that average, and questions waiting for the upstream at once (0: no limit).
    # A query over a limit gets SERVFAIL at once and is counted.
    dns_rate: int = 5000
    dns_burst: int = 10000
    dns_max_pending: int = 256
    # Port of the egress gateway inside every sandbox (on 127.0.0.1 and ::1), where the
    # ruleset redirects TCP 80/443. Below 1024 for the reason above, and one that no
    # service in /etc/services uses, so it does not collide with a server the sandbox
    # runs on loopback (853 is DNS over TLS, 990 FTPS).
    gateway_port: int = 1017
    # SO_MARK of the gateway's outbound sockets: the sandbox's ruleset accepts packets
    # with this mark and never redirects them. Setting a mark needs CAP_NET_ADMIN, which
    # processes in a sandbox lack. 0x72756e74 is "runt" in ASCII.
    gateway_mark: int = 0x72756E74
    # Seconds the gateway waits for a ClientHello or request head before it resets.
    gateway_first_flight_timeout: float = 5.0
    # Seconds a relayed connection may carry no bytes before the gateway resets it.
    gateway_idle_timeout: float = 3600.0
    # Connections one sandbox's gateway handles at once; above it new ones are reset.
    gateway_max_connections: int = 4096
    # Per upstream try, in seconds; a query gives up after every upstream was tried once.
    upstream_timeout: float = 2.0
    # Bounds in seconds for the TTL of addresses that runtad resolves itself.
    min_ttl: int = 30
    max_ttl: int = 86400
    # Seconds added to every set element's timeout beyond the DNS TTL, so a client that
    # connects right as its cached answer expires still finds the address allowed.
    ttl_grace: int = 5
    # Maximum seconds a policy write waits for its new hosts to resolve before it returns.
    resolve_wait: float = 3.0
    # Back-off bounds in seconds for retrying hosts that did not resolve.
    retry_min: float = 1.0
    retry_max: float = 60.0
    # NFLOG group that every sandbox ruleset logs to (groups are per network namespace).
    log_group: int = 7
    # Kernel log events per second and burst per sandbox, above which events are counted
    # as suppressed instead of sent.
    log_rate: int = 200
    log_burst: int = 400
    # DNS answers and lookups of allowed names never put addresses in these networks into
    # the allow sets (DNS rebinding). The sandbox pools and the host's own addresses are
    # denied as well while deny_host_answers is true. An empty list turns the check off.
    denied_answer_networks: list[str] = field(default_factory=lambda: list(DEFAULT_DENIED_NETWORKS))
    deny_host_answers: bool = True
    # Audit events (audit.db in state_dir) older than this many days are deleted.
    audit_retention_days: int = 30
    # Beyond this many stored audit events the oldest are deleted.
    audit_max_rows: int = 10_000_000
    # Seconds within which repeats of one decision (same sandbox, action, host, address,
    # port and reason) are stored as one event with a count; 0 stores each one.
    audit_fold_seconds: float = 2.0
    # Audit events waiting for the writer; above this, events are counted as dropped.
    audit_queue_max: int = 100_000
    # Also write every stored audit event as one "egress_audit" log line (for journald).
    audit_log_lines: bool = True
    # Level of the daemon's log lines on stdout: debug, info, warning or error.
    log_level: str = "info"
    # Address of a TCP listener serving only GET /metrics, as "ADDR:PORT" or
    # "[V6]:PORT", for example "127.0.0.1:9469"; empty turns the listener off. The API
    # socket serves GET /metrics either way.
    metrics_listen: str = ""
    # Accept a metrics_listen address other than loopback. Metrics name every sandbox,
    # so open them to the network only behind a firewall that admits the scraper alone.
    metrics_allow_remote: bool = False

    def validate(self) -> None:
        for key in ("ipv4_pool", "ipv6_pool"):
            value = getattr(self, key)
            try:
                network = ipaddress.ip_network(value)
            except ValueError as error:
                raise ConfigError(f"invalid {key} {value!r}: {error}") from None
            wanted = 4 if key == "ipv4_pool" else 6
            if network.version != wanted:
                raise ConfigError(f"invalid {key} {value!r}: expected an IPv{wanted} network")
        if not 1 <= self.dns_listen_port <= 65535:
            raise ConfigError(f"invalid dns_listen_port {self.dns_listen_port}: use 1 to 65535")
        for key in ("dns_rate", "dns_burst", "dns_max_pending"):
            if getattr(self, key) < 0:
                raise ConfigError(f"invalid {key} {getattr(self, key)}: use 0 (no limit) or more")
        if not 1 <= self.gateway_port <= 65535 or self.gateway_port == self.dns_listen_port:
            raise ConfigError(
                f"invalid gateway_port {self.gateway_port}: use 1 to 65535, not dns_listen_port"
            )
        if not 0 < self.gateway_mark < 1 << 32:
            raise ConfigError(f"invalid gateway_mark {self.gateway_mark}: use 1 to 0xffffffff")
        if self.gateway_first_flight_timeout <= 0 or self.gateway_idle_timeout <= 0:
            raise ConfigError("invalid gateway timeouts: both must be above 0 seconds")
        if self.gateway_max_connections < 1:
            raise ConfigError(
                f"invalid gateway_max_connections {self.gateway_max_connections}: use 1 or more"
            )
        if not 0 < self.min_ttl <= self.max_ttl:
            raise ConfigError(
                f"invalid TTL bounds min_ttl={self.min_ttl} max_ttl={self.max_ttl}:"
                " need 0 < min_ttl <= max_ttl"
            )
        if not 0 <= self.log_group <= 65535:
            raise ConfigError(f"invalid log_group {self.log_group}: use 0 to 65535")
        for key in ("audit_retention_days", "audit_max_rows", "audit_queue_max"):
            if getattr(self, key) < 1:
                raise ConfigError(f"invalid {key} {getattr(self, key)}: use 1 or more")
        if not 0 <= self.audit_fold_seconds <= 3600:
            raise ConfigError(
                f"invalid audit_fold_seconds {self.audit_fold_seconds}: use 0 to 3600 seconds"
            )
        for server in self.upstream_dns:
            parse_server(server)
        for entry in self.denied_answer_networks:
            try:
                ipaddress.ip_network(entry)
            except ValueError as error:
                raise ConfigError(
                    f"invalid denied_answer_networks entry {entry!r}: {error};"
                    " write networks such as 169.254.0.0/16 or fe80::/10"
                ) from None
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"invalid log_level {self.log_level!r}: use one of " + ", ".join(LOG_LEVELS)
            )
        if self.metrics_listen:
            host, _ = parse_listen_address(self.metrics_listen)
            if not self.metrics_allow_remote and not ipaddress.ip_address(host).is_loopback:
                raise ConfigError(
                    f"invalid metrics_listen {self.metrics_listen!r}: not a loopback address;"
                    " use 127.0.0.1 or [::1], or set metrics_allow_remote = true"
                )


def parse_server(text: str) -> tuple[str, int]:
    """Parse "ADDR", "ADDR:PORT" or "[V6]:PORT" into an address and a port."""
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"invalid name server {text!r}: expected [ADDR]:PORT")
            port = _parse_port(text, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(text, port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"invalid name server {text!r}: expected an IP address, optionally with :PORT"
        ) from None
    return host, port


def parse_listen_address(text: str) -> tuple[str, int]:
    """Parse "ADDR:PORT" or "[V6]:PORT", where ADDR is an IP address, for a listener."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"invalid listen address {text!r}: expected ADDR:PORT or [V6]:PORT with an IP address"
        ) from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"invalid listen address {text!r}: port must be 1 to 65535")
    return host, int(port_text)


def changed_settings(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Return the settings whose value differs, as name -> (old value, new value)."""
    return {
        item.name: (getattr(old, item.name), getattr(new, item.name))
        for item in dataclasses.fields(Config)
        if getattr(old, item.name) != getattr(new, item.name)
    }


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"invalid name server {text!r}: port must be 1 to 65535")
    return int(port_text)


def read_resolv_conf(path: Path = Path("/etc/resolv.conf")) -> list[str]:
    """Return the name servers listed in a resolv.conf file."""
    servers = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            servers.append(parts[1].split("%")[0])
    return servers


def load(path: Path | None, overrides: dict[str, Any]) -> Config:
    """Build the configuration from defaults, the TOML file (if present) and overrides."""
    values: dict[str, Any] = {}
    config_path = path or DEFAULT_CONFIG_PATH
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read configuration {config_path}: {error}") from None
        values.update(_flatten(data, config_path))
    elif path is not None:
        raise ConfigError(f"configuration file {path} not found")
    values.update({key: value for key, value in overrides.items() if value is not None})

    known = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]!r} in {config_path}: known settings are "
            + ", ".join(sorted(known))
        )
    config = Config()
    for key, value in values.items():
        setattr(config, key, _coerce(key, value, getattr(config, key), config_path))
    config.validate()
    return config


def _coerce(key: str, value: Any, default: Any, config_path: Path) -> Any:
    """Return value in the type of the setting's default, or raise ConfigError."""
    if isinstance(default, Path) and isinstance(value, (str, Path)):
        return Path(value)
    if isinstance(default, list) and isinstance(value, list):
        if all(isinstance(item, str) for item in value):
            return value
        raise ConfigError(f"invalid value {value!r} for {key} in {config_path}: expected strings")
    if isinstance(default, (Path, list)):
        expected = "a path" if isinstance(default, Path) else "a list"
        raise ConfigError(f"invalid value {value!r} for {key} in {config_path}: expected {expected}")
    # bool is a subclass of int in Python: true must not pass for a number, nor 1 for true.
    if isinstance(value, bool) == isinstance(default, bool) and isinstance(value, type(default)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(
        f"invalid value {value!r} for {key} in {config_path}: expected {type(default).__name__}"
    )


def _flatten(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Accept settings at the top level or grouped in TOML tables (sections)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                flat[inner_key] = inner_value
        else:
            flat[key] = value
    return flat
