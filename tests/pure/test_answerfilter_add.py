"""AnswerFilter.add_addresses: host addresses gained after start."""

from __future__ import annotations

from runtad.answerfilter import AnswerFilter


def test_add_addresses_denies_new() -> None:
    answer_filter = AnswerFilter([], ["192.0.2.1"])
    assert not answer_filter.is_denied("192.0.2.2")

    added = answer_filter.add_addresses(["192.0.2.1", "192.0.2.2", "2001:db8::2"])

    assert added == ["192.0.2.2", "2001:db8::2"]
    assert answer_filter.is_denied("192.0.2.2")
    assert answer_filter.is_denied("2001:db8::2")


def test_add_addresses_known_returns_empty() -> None:
    answer_filter = AnswerFilter(["10.0.0.0/8"], ["192.0.2.1"])
    assert answer_filter.add_addresses(["192.0.2.1"]) == []
    assert answer_filter.is_denied("10.1.2.3")
