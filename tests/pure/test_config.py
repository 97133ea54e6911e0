"""Daemon settings: defaults, unknown keys, type and range checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtad.config import ConfigError, load, parse_server, read_resolv_conf


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtad.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path: Path) -> None:
    config = load(None, {"state_dir": tmp_path})
    assert config.dns_listen_port == 53
    assert config.state_dir == tmp_path


def test_unknown_key_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'min_tll'"):
        load(write(tmp_path, "min_tll = 5\n"), {})


def test_sections_accepted(tmp_path: Path) -> None:
    config = load(write(tmp_path, "[dns]\nmin_ttl = 10\n"), {})
    assert config.min_ttl == 10


def test_wrong_type_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected int"):
        load(write(tmp_path, 'min_ttl = "ten"\n'), {})


def test_bad_pool_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ipv4_pool"):
        load(write(tmp_path, 'ipv4_pool = "fd00::/64"\n'), {})


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("198.51.100.53", ("198.51.100.53", 53)), ("198.51.100.53:5353", ("198.51.100.53", 5353)),
     ("2001:db8::53", ("2001:db8::53", 53)), ("[2001:db8::53]:5353", ("2001:db8::53", 5353))],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["dns.example", "198.51.100.53:0", "[2001:db8::53]x", "1.2.3.4:abc"])
def test_parse_server_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_server(text)


def test_resolv_conf_nameservers(tmp_path: Path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nnameserver 198.51.100.53\nsearch example\nnameserver fe80::1%eth0\n")
    assert read_resolv_conf(path) == ["198.51.100.53", "fe80::1"]
