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

from .errors import RuntadError

DEFAULT_CONFIG_PATH = Path("/etc/runta/runtad.toml")
DEFAULT_STATE_DIR = Path("/var/lib/runta")
DEFAULT_SOCKET_PATH = Path("/run/runta/runtad.sock")


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
        if not 0 < self.min_ttl <= self.max_ttl:
            raise ConfigError(
                f"invalid TTL bounds min_ttl={self.min_ttl} max_ttl={self.max_ttl}:"
                " need 0 < min_ttl <= max_ttl"
            )
        if not 0 <= self.log_group <= 65535:
            raise ConfigError(f"invalid log_group {self.log_group}: use 0 to 65535")
        for server in self.upstream_dns:
            parse_server(server)


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
        default = getattr(config, key)
        if isinstance(default, Path):
            value = Path(value)
        elif isinstance(default, bool) or not isinstance(value, type(default)):
            if isinstance(default, float) and isinstance(value, int):
                value = float(value)
            else:
                raise ConfigError(
                    f"invalid value {value!r} for {key} in {config_path}:"
                    f" expected {type(default).__name__}"
                )
        setattr(config, key, value)
    config.validate()
    return config


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
