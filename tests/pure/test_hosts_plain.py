"""The shortcut of parse_rule for plain entries gives what the full checks give."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtad import hosts
from runtad.hosts import HostRule, InvalidHostError, parse_rule


def full_parse(
    text: str, force: bool, monkeypatch: pytest.MonkeyPatch
) -> HostRule | InvalidHostError:
    """Parse text with the shortcut turned off, returning the error instead of raising it."""
    with monkeypatch.context() as patch:
        patch.setattr(hosts, "_plain_pattern", lambda text: None)
        return outcome(text, force)


def outcome(text: str, force: bool) -> HostRule | InvalidHostError:
    try:
        return parse_rule(text, force=force)
    except InvalidHostError as error:
        return error


def assert_same(text: str, force: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = outcome(text, force)
    full = full_parse(text, force, monkeypatch)
    assert type(fast) is type(full)
    if isinstance(fast, HostRule):
        assert fast == full
    else:
        assert str(fast) == str(full)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("pypi.org", "pypi.org"),
        ("PyPI.Org.", "pypi.org"),
        ("*.pythonhosted.org", "*.pythonhosted.org"),
        ("a-b.example.test", "a-b.example.test"),
        ("localhost", "localhost"),
    ],
)
def test_plain_pattern_accepts(text: str, pattern: str) -> None:
    assert hosts._plain_pattern(text) == pattern


@pytest.mark.parametrize(
    "text",
    [
        "", ".", "*", "*.", "a..b", ".example.com", "-a.example", "a-.example", "1.2.3.4",
        "example.123", "example.0x1f", "xn--bcher-kva.example", "b\u00fccher.example",
        "\u212a.example", "a_b.example", "pypi.org:443", "https://pypi.org", "pypi.org/",
        "user@pypi.org", "a.*.example", "*a.example", "%41.example", "pypi.org ",
        "a" * 64 + ".example", ("a" * 63 + ".") * 4 + "a",
    ],
)  # fmt: skip
def test_plain_pattern_declines(text: str) -> None:
    assert hosts._plain_pattern(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "pypi.org", "PYPI.ORG.", "*.com", "*.github.io", "*.pythonhosted.org", "1.2.3.4",
        "example.123", "xn--bcher-kva.example", "XN--BCHER-KVA.example", "xn--abc.example",
        "a" * 63 + ".example", "a" * 64 + ".example", ("a" * 62 + ".") * 4 + "ab",
        ("a" * 63 + ".") * 4 + "a", "*." + ("a" * 62 + ".") * 3 + "abcde",
    ],
)  # fmt: skip
@pytest.mark.parametrize("force", [False, True])
def test_shortcut_matches_full_checks(
    text: str, force: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_same(text, force, monkeypatch)


ENTRY_CHARACTERS = st.sampled_from(list("abzAZ09-.*_:/@%x") + ["xn--", "\u00fc", "\u212a", " "])


@settings(max_examples=500, deadline=None)
@given(st.lists(ENTRY_CHARACTERS, max_size=24).map("".join), st.booleans())
def test_shortcut_matches_full_checks_random(text: str, force: bool) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert_same(text, force, monkeypatch)
