"""etc/runtad.toml lists every setting at its default, and the settings that reload."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from runtad import config as config_module
from runtad.config import Config, ConfigError

CONFIG_FILE = Path(__file__).resolve().parents[2] / "etc" / "runtad.toml"
SETTING_LINE = re.compile(r"^#(?P<key>[a-z0-9_]+) = (?P<value>.+)$")


@dataclasses.dataclass
class Listed:
    key: str
    value: object
    comment: str


def listed_settings() -> list[Listed]:
    """Return the commented-out settings of the file with the comment block above each."""
    listed: list[Listed] = []
    comment: list[str] = []
    for line in CONFIG_FILE.read_text().splitlines():
        match = SETTING_LINE.match(line)
        if match:
            value = tomllib.loads(f"v = {match['value']}")["v"]
            listed.append(Listed(match["key"], value, " ".join(comment)))
        elif line.startswith("# "):
            comment.append(line[2:])
        elif not line.strip():
            comment = []
    return listed


def default_values() -> dict[str, object]:
    defaults = Config()
    values = {}
    for item in dataclasses.fields(Config):
        value = getattr(defaults, item.name)
        values[item.name] = str(value) if isinstance(value, Path) else value
    return values


def test_config_file_lists_every_setting_once() -> None:
    keys = [item.key for item in listed_settings()]
    assert sorted(keys) == sorted(default_values())
    assert len(keys) == len(set(keys))


def test_config_file_values_are_defaults() -> None:
    defaults = default_values()
    for item in listed_settings():
        assert item.value == defaults[item.key], item.key
        assert type(item.value) is type(defaults[item.key]), item.key


def test_config_file_marks_reload_or_restart() -> None:
    for item in listed_settings():
        expected = "Reload." if item.key in config_module.RELOADABLE else "Restart."
        assert expected in item.comment, item.key


def test_config_file_as_shipped_loads_defaults() -> None:
    assert config_module.load(CONFIG_FILE, {}) == Config()


def test_config_file_uncommented_loads_defaults(tmp_path: Path) -> None:
    text = re.sub(r"^#([a-z0-9_]+ = )", r"\1", CONFIG_FILE.read_text(), flags=re.MULTILINE)
    path = tmp_path / "runtad.toml"
    path.write_text(text)
    assert config_module.load(path, {}) == Config()


def test_reloadable_names_are_settings() -> None:
    assert config_module.RELOADABLE <= set(default_values())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtad.toml"
    path.write_text(text)
    return path


def test_load_accepts_bool_setting(tmp_path: Path) -> None:
    config = config_module.load(write(tmp_path, "metrics_allow_remote = true\n"), {})
    assert config.metrics_allow_remote is True


def test_load_rejects_number_for_bool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metrics_allow_remote"):
        config_module.load(write(tmp_path, "metrics_allow_remote = 1\n"), {})


def test_load_rejects_bool_for_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="min_ttl"):
        config_module.load(write(tmp_path, "min_ttl = true\n"), {})


def test_load_rejects_number_for_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="state_dir"):
        config_module.load(write(tmp_path, "state_dir = 5\n"), {})


def test_load_rejects_number_in_server_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="upstream_dns"):
        config_module.load(write(tmp_path, "upstream_dns = [53]\n"), {})


def test_load_rejects_unknown_log_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log_level 'loud'"):
        config_module.load(write(tmp_path, 'log_level = "loud"\n'), {})


def test_metrics_listen_loopback_accepted(tmp_path: Path) -> None:
    config = config_module.load(write(tmp_path, 'metrics_listen = "[::1]:9469"\n'), {})
    assert config_module.parse_listen_address(config.metrics_listen) == ("::1", 9469)


def test_metrics_listen_remote_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        config_module.load(write(tmp_path, 'metrics_listen = "192.0.2.1:9469"\n'), {})


def test_metrics_listen_remote_allowed(tmp_path: Path) -> None:
    text = 'metrics_listen = "192.0.2.1:9469"\nmetrics_allow_remote = true\n'
    assert config_module.load(write(tmp_path, text), {}).metrics_listen == "192.0.2.1:9469"


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:0", "localhost:9469", "[::1]", "::1"])
def test_parse_listen_address_invalid(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid listen address"):
        config_module.parse_listen_address(text)


def test_changed_settings_lists_differences() -> None:
    old = Config()
    new = Config(min_ttl=60, netns_prefix="rt-")
    assert config_module.changed_settings(old, new) == {
        "min_ttl": (30, 60), "netns_prefix": ("runta-", "rt-"),
    }
