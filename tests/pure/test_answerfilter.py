"""Which answer addresses may enter a sandbox's sets (DNS rebinding)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtad.answerfilter import DEFAULT_DENIED_NETWORKS, AnswerFilter
from runtad.config import ConfigError, load


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.251", "::1", "fe80::1", "::ffff:127.0.0.1"],
)
def test_default_denies(address: str) -> None:
    assert AnswerFilter(DEFAULT_DENIED_NETWORKS).is_denied(address)


@pytest.mark.parametrize("address", ["192.0.2.10", "198.51.100.7", "2001:db8::10", "10.1.2.3"])
def test_default_permits(address: str) -> None:
    assert not AnswerFilter(DEFAULT_DENIED_NETWORKS).is_denied(address)


def test_extend_adds_pools_and_addresses() -> None:
    answer_filter = AnswerFilter(DEFAULT_DENIED_NETWORKS)
    answer_filter.extend(["10.213.0.0/16"], ["203.0.113.2"])
    assert answer_filter.is_denied("10.213.4.1")
    assert answer_filter.is_denied("203.0.113.2")
    assert not answer_filter.is_denied("203.0.113.3")


def test_empty_list_denies_nothing() -> None:
    assert not AnswerFilter([]).is_denied("169.254.169.254")


def test_config_rejects_bad_network(tmp_path: Path) -> None:
    path = tmp_path / "runtad.toml"
    path.write_text('denied_answer_networks = ["169.254.0.0/33"]\n')
    with pytest.raises(ConfigError, match=r"169\.254\.0\.0/33.*169\.254\.0\.0/16"):
        load(path, {})


def test_extend_after_cached_verdict() -> None:
    answer_filter = AnswerFilter(DEFAULT_DENIED_NETWORKS)
    assert not answer_filter.is_denied("203.0.113.2")
    answer_filter.extend([], ["203.0.113.2"])
    assert answer_filter.is_denied("203.0.113.2")
