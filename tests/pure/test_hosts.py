"""Tests of allowlist host rules: parsing, canonical wire names and matching."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtad.hosts import (
    BadCharacterError,
    BadPortError,
    BareWildcardError,
    EmptyHostError,
    EmptyLabelError,
    FragmentError,
    HostMatcher,
    HostRule,
    InvalidHostError,
    InvalidHostsError,
    InvalidIDNAError,
    IPLiteralError,
    LabelHyphenError,
    LabelTooLongError,
    LeadingDotError,
    MisplacedWildcardError,
    NameTooLongError,
    NumericTLDError,
    PathError,
    PercentEncodedError,
    PortError,
    PublicSuffixWildcardError,
    QueryError,
    SchemeError,
    UrlPartError,
    UserInfoError,
    WhitespaceError,
    canonical_name,
    parse_rule,
    parse_rules,
)

VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "host_normalization.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

LABEL_63 = "a" * 63
NAME_253 = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61
NAME_254 = NAME_253 + "d"


# parse_rule: accepted entries

VALID_RULES = [
    pytest.param("pypi.org", "pypi.org", "exact", id="plain"),
    pytest.param("Pypi.ORG", "pypi.org", "exact", id="mixed-case"),
    pytest.param("pypi.org.", "pypi.org", "exact", id="trailing-dot"),
    pytest.param("PYPI.ORG.", "pypi.org", "exact", id="upper-trailing-dot"),
    pytest.param("api.openai.com", "api.openai.com", "exact", id="three-labels"),
    pytest.param("localhost", "localhost", "exact", id="single-label"),
    pytest.param("1password.com", "1password.com", "exact", id="leading-digit"),
    pytest.param("123.example", "123.example", "exact", id="numeric-inner-label"),
    pytest.param("r3---sn-abc.example", "r3---sn-abc.example", "exact", id="inner-hyphens"),
    pytest.param(LABEL_63 + ".example", LABEL_63 + ".example", "exact", id="label-63"),
    pytest.param(NAME_253, NAME_253, "exact", id="name-253"),
    pytest.param(NAME_253 + ".", NAME_253, "exact", id="name-253-trailing-dot"),
    pytest.param("*.pythonhosted.org", "*.pythonhosted.org", "wildcard", id="wildcard"),
    pytest.param("*.PythonHosted.ORG.", "*.pythonhosted.org", "wildcard", id="wildcard-case-dot"),
    pytest.param("*.foo.github.io", "*.foo.github.io", "wildcard", id="wildcard-below-suffix"),
    pytest.param("*.amazonaws.com", "*.amazonaws.com", "wildcard", id="wildcard-registered"),
    pytest.param("Bücher.example", "xn--bcher-kva.example", "exact", id="idna"),
    pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", "exact", id="a-label"),
    pytest.param("XN--BCHER-KVA.example", "xn--bcher-kva.example", "exact", id="a-label-upper"),
    pytest.param("*.bücher.example", "*.xn--bcher-kva.example", "wildcard", id="idna-wildcard"),
    pytest.param("faß.de", "xn--fa-hia.de", "exact", id="idna-sharp-s"),
    pytest.param("\uff30\uff39\uff30\uff29\u3002org", "pypi.org", "exact", id="fullwidth"),
]


@pytest.mark.parametrize(("text", "pattern", "kind"), VALID_RULES)
def test_parse_rule_pattern(text: str, pattern: str, kind: str) -> None:
    assert parse_rule(text).pattern == pattern


@pytest.mark.parametrize(("text", "pattern", "kind"), VALID_RULES)
def test_parse_rule_kind(text: str, pattern: str, kind: str) -> None:
    assert parse_rule(text).kind == kind


# parse_rule: rejected entries, with the reason and the suggested bare host

INVALID_RULES = [
    pytest.param("", "empty", None, id="empty"),
    pytest.param(" pypi.org ", "has_whitespace", "pypi.org", id="spaces-around"),
    pytest.param("pypi.org\t", "has_whitespace", "pypi.org", id="tab"),
    pytest.param("pypi .org", "has_whitespace", None, id="space-inside"),
    pytest.param("https://pypi.org/simple", "has_scheme", "pypi.org", id="url"),
    pytest.param("https://pypi.org", "has_scheme", "pypi.org", id="scheme"),
    pytest.param("https://PyPI.org./", "has_scheme", "pypi.org", id="url-case-dot"),
    pytest.param("//pypi.org", "has_scheme", "pypi.org", id="scheme-relative"),
    pytest.param("https://pypi..org/", "has_scheme", None, id="url-bad-host"),
    pytest.param("pypi.org:443", "has_port", "pypi.org", id="port"),
    pytest.param("pypi.org:443/simple", "has_port", "pypi.org", id="port-path"),
    pytest.param("pypi.org/simple", "has_path", "pypi.org", id="path"),
    pytest.param("pypi.org/", "has_path", "pypi.org", id="slash"),
    pytest.param("pypi.org?x=1", "has_query", "pypi.org", id="query"),
    pytest.param("pypi.org#top", "has_fragment", "pypi.org", id="fragment"),
    pytest.param("user@pypi.org", "has_userinfo", "pypi.org", id="userinfo"),
    pytest.param("https://user:pw@pypi.org/", "has_userinfo", "pypi.org", id="url-password"),
    pytest.param("https://pypi.org@evil.test/", "has_userinfo", "evil.test", id="userinfo-host"),
    pytest.param("https://pypi.org:443@evil.test", "has_userinfo", "evil.test", id="userinfo-port"),
    pytest.param("https://pypi.org%40evil.test/", "percent_encoded", None, id="percent-at"),
    pytest.param("pypi.org:abc", "bad_port", None, id="port-letters"),
    pytest.param("https:pypi.org", "bad_port", None, id="scheme-no-slashes"),
    pytest.param("pypi.org:99999", "bad_port", "pypi.org", id="port-range"),
    pytest.param("192.0.2.1", "ip_literal", None, id="ipv4"),
    pytest.param("192.0.2.1:443", "ip_literal", None, id="ipv4-port"),
    pytest.param("2001:db8::1", "ip_literal", None, id="ipv6"),
    pytest.param("[2001:db8::1]", "ip_literal", None, id="ipv6-brackets"),
    pytest.param("https://[2001:db8::1]:443/", "ip_literal", None, id="ipv6-url"),
    pytest.param("::1", "ip_literal", None, id="ipv6-loopback"),
    pytest.param("127.1", "numeric_tld", None, id="short-ipv4"),
    pytest.param("0x7f000001", "numeric_tld", None, id="hex-ipv4"),
    pytest.param("example.123", "numeric_tld", None, id="numeric-tld"),
    pytest.param(".", "empty_label", None, id="root"),
    pytest.param("pypi..org", "empty_label", None, id="double-dot"),
    pytest.param("pypi.org..", "empty_label", None, id="two-trailing-dots"),
    pytest.param(".pythonhosted.org", "leading_dot", None, id="leading-dot"),
    pytest.param("_dmarc.example.com", "bad_character", None, id="underscore"),
    pytest.param("pypi!.org", "bad_character", None, id="punctuation"),
    pytest.param("-pypi.org", "bad_hyphen", None, id="hyphen-start"),
    pytest.param("pypi-.org", "bad_hyphen", None, id="hyphen-end"),
    pytest.param("a" * 64 + ".example", "label_too_long", None, id="label-64"),
    pytest.param("a" * 59 + "ü.example", "label_too_long", None, id="a-label-67"),
    pytest.param(NAME_254, "name_too_long", None, id="name-254"),
    pytest.param("*", "bare_wildcard", None, id="star"),
    pytest.param("*.", "bare_wildcard", None, id="star-dot"),
    pytest.param("**.org", "misplaced_wildcard", None, id="double-star"),
    pytest.param("*pythonhosted.org", "misplaced_wildcard", None, id="star-no-dot"),
    pytest.param("files*.pythonhosted.org", "misplaced_wildcard", None, id="star-in-label"),
    pytest.param("a.*.org", "misplaced_wildcard", None, id="star-inner"),
    pytest.param("*.*.example.com", "misplaced_wildcard", None, id="two-stars"),
    pytest.param("\U0001f4a9.la", "invalid_idna", None, id="emoji"),
    pytest.param("xn--zz.example", "invalid_idna", None, id="bad-a-label"),
    pytest.param("*.org", "public_suffix_wildcard", None, id="wildcard-tld"),
    pytest.param("*.co.uk", "public_suffix_wildcard", None, id="wildcard-co-uk"),
    pytest.param("*.github.io", "public_suffix_wildcard", None, id="wildcard-private"),
]

ERROR_CLASSES: dict[str, type[InvalidHostError]] = {
    "empty": EmptyHostError,
    "has_whitespace": WhitespaceError,
    "has_scheme": SchemeError,
    "has_port": PortError,
    "has_path": PathError,
    "has_query": QueryError,
    "has_fragment": FragmentError,
    "has_userinfo": UserInfoError,
    "percent_encoded": PercentEncodedError,
    "bad_port": BadPortError,
    "ip_literal": IPLiteralError,
    "numeric_tld": NumericTLDError,
    "empty_label": EmptyLabelError,
    "leading_dot": LeadingDotError,
    "bad_character": BadCharacterError,
    "bad_hyphen": LabelHyphenError,
    "label_too_long": LabelTooLongError,
    "name_too_long": NameTooLongError,
    "bare_wildcard": BareWildcardError,
    "misplaced_wildcard": MisplacedWildcardError,
    "invalid_idna": InvalidIDNAError,
    "public_suffix_wildcard": PublicSuffixWildcardError,
}


def _parse_error(text: str, *, force: bool = False) -> InvalidHostError:
    with pytest.raises(InvalidHostError) as excinfo:
        parse_rule(text, force=force)
    return excinfo.value


@pytest.mark.parametrize(("text", "reason", "suggestion"), INVALID_RULES)
def test_parse_rule_error_reason(text: str, reason: str, suggestion: str | None) -> None:
    assert _parse_error(text).reason == reason


@pytest.mark.parametrize(("text", "reason", "suggestion"), INVALID_RULES)
def test_parse_rule_error_class(text: str, reason: str, suggestion: str | None) -> None:
    assert type(_parse_error(text)) is ERROR_CLASSES[reason]


@pytest.mark.parametrize(("text", "reason", "suggestion"), INVALID_RULES)
def test_parse_rule_error_suggestion(text: str, reason: str, suggestion: str | None) -> None:
    assert _parse_error(text).suggestion == suggestion


@pytest.mark.parametrize(("text", "reason", "suggestion"), INVALID_RULES)
def test_parse_rule_error_host(text: str, reason: str, suggestion: str | None) -> None:
    assert _parse_error(text).host == text


@pytest.mark.parametrize(("text", "reason", "suggestion"), INVALID_RULES)
def test_parse_rule_error_message_names_entry(
    text: str, reason: str, suggestion: str | None
) -> None:
    assert repr(text) in str(_parse_error(text))


SUGGESTED = [param for param in INVALID_RULES if param.values[2] is not None]


@pytest.mark.parametrize(("text", "reason", "suggestion"), SUGGESTED)
def test_parse_rule_error_message_shows_suggestion(text: str, reason: str, suggestion: str) -> None:
    assert repr(suggestion) in str(_parse_error(text))


def test_parse_rule_error_is_value_error() -> None:
    assert isinstance(_parse_error("pypi..org"), ValueError)


def test_parse_rule_leading_dot_suggests_wildcard() -> None:
    message = str(_parse_error(".pythonhosted.org"))
    assert "'*.pythonhosted.org'" in message
    assert "'pythonhosted.org'" in message


def test_parse_rule_misplaced_wildcard_hint() -> None:
    assert "'*.pythonhosted.org'" in str(_parse_error("*pythonhosted.org"))


def test_parse_rule_port_message_says_not_policy() -> None:
    assert "Ports are not part of the policy" in str(_parse_error("pypi.org:443"))


def test_parse_rule_url_message_shows_host_problem() -> None:
    assert "empty label" in str(_parse_error("https://pypi..org/"))


def test_parse_rule_userinfo_message_shows_real_host() -> None:
    assert "'evil.test'" in str(_parse_error("https://pypi.org@evil.test/"))


def test_parse_rule_ip_message() -> None:
    assert "the allowlist takes host names, not addresses" in str(_parse_error("192.0.2.1"))


def test_parse_rule_url_errors_share_base() -> None:
    assert isinstance(_parse_error("https://pypi.org"), UrlPartError)


def test_parse_rule_public_suffix_error_suffix() -> None:
    error = _parse_error("*.co.uk")
    assert isinstance(error, PublicSuffixWildcardError)
    assert error.suffix == "co.uk"


def test_parse_rule_rejects_non_string() -> None:
    with pytest.raises(TypeError):
        parse_rule(b"pypi.org")  # type: ignore[arg-type]


# parse_rule: wildcards on public suffixes need force

PUBLIC_SUFFIX_WILDCARDS = [
    pytest.param("*.org", "*.org", id="tld"),
    pytest.param("*.co.uk", "*.co.uk", id="second-level"),
    pytest.param("*.github.io", "*.github.io", id="private-section"),
    pytest.param("*.s3.amazonaws.com", "*.s3.amazonaws.com", id="private-deep"),
    pytest.param("*.internal", "*.internal", id="unknown-tld"),
    pytest.param("*.рф", "*.xn--p1ai", id="idna-tld"),
]


@pytest.mark.parametrize(("text", "pattern"), PUBLIC_SUFFIX_WILDCARDS)
def test_parse_rule_public_suffix_rejected(text: str, pattern: str) -> None:
    assert isinstance(_parse_error(text), PublicSuffixWildcardError)


@pytest.mark.parametrize(("text", "pattern"), PUBLIC_SUFFIX_WILDCARDS)
def test_parse_rule_public_suffix_forced(text: str, pattern: str) -> None:
    assert parse_rule(text, force=True) == HostRule(pattern, "wildcard")


def test_parse_rule_force_keeps_other_checks() -> None:
    assert _parse_error("**.org", force=True).reason == "misplaced_wildcard"


def test_parse_rule_exact_public_suffix_accepted() -> None:
    assert parse_rule("github.io") == HostRule("github.io", "exact")


# HostRule


def test_host_rule_suffix_wildcard() -> None:
    assert parse_rule("*.pythonhosted.org").suffix == "pythonhosted.org"


def test_host_rule_suffix_exact() -> None:
    assert parse_rule("pypi.org").suffix is None


def test_host_rule_to_text() -> None:
    assert parse_rule("*.PythonHosted.org.").to_text() == "*.pythonhosted.org"


def test_host_rule_kind_mismatch() -> None:
    with pytest.raises(ValueError, match="parse_rule"):
        HostRule("*.example.com", "exact")


def test_host_rule_frozen() -> None:
    rule = parse_rule("pypi.org")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.pattern = "evil.test"  # type: ignore[misc]


# Matching: one table for the DNS proxy and the SNI / Host gateway

MATCH_RULES = ["pypi.org", "*.pythonhosted.org"]

MATCH_TABLE = [
    pytest.param("pypi.org", "pypi.org", id="exact"),
    pytest.param("notpypi.org", None, id="exact-prefix"),
    pytest.param("www.pypi.org", None, id="exact-subdomain"),
    pytest.param("pypi.org.evil.test", None, id="exact-as-prefix"),
    pytest.param("ypi.org", None, id="exact-shorter"),
    pytest.param("evilpythonhosted.org", None, id="wildcard-no-boundary"),
    pytest.param("xpythonhosted.org", None, id="wildcard-one-letter"),
    pytest.param("pythonhosted.org.evil.test", None, id="wildcard-as-prefix"),
    pytest.param("pythonhosted.org", None, id="wildcard-apex"),
    pytest.param("a.pythonhosted.org", "*.pythonhosted.org", id="depth-1"),
    pytest.param("a.b.pythonhosted.org", "*.pythonhosted.org", id="depth-2"),
    pytest.param("a.b.c.d.pythonhosted.org", "*.pythonhosted.org", id="depth-4"),
    pytest.param("files.pythonhosted.org", "*.pythonhosted.org", id="files"),
    pytest.param("org", None, id="tld"),
    pytest.param("example.com", None, id="unrelated"),
    pytest.param("", None, id="empty"),
]


@pytest.fixture(scope="module")
def matcher() -> HostMatcher:
    return HostMatcher(parse_rules(MATCH_RULES))


@pytest.mark.parametrize(("name", "pattern"), MATCH_TABLE)
def test_matcher_match(matcher: HostMatcher, name: str, pattern: str | None) -> None:
    rule = matcher.match(name)
    assert (rule.pattern if rule else None) == pattern


@pytest.mark.parametrize(("name", "pattern"), MATCH_TABLE)
def test_rule_matches_agrees(name: str, pattern: str | None) -> None:
    matching = [rule.pattern for rule in parse_rules(MATCH_RULES) if rule.matches(name)]
    assert matching == ([pattern] if pattern else [])


WIRE_MATCH_TABLE = [
    pytest.param("PyPI.org.", "pypi.org", id="sni-case-dot"),
    pytest.param("pYpI.oRg", "pypi.org", id="qname-case"),
    pytest.param("PYPI.ORG.", "pypi.org", id="owner-upper"),
    pytest.param("FILES.PythonHosted.org.", "*.pythonhosted.org", id="wildcard-case-dot"),
    pytest.param("files.pythonhosted.org.", "*.pythonhosted.org", id="wildcard-dot"),
    pytest.param("PythonHosted.org.", None, id="apex-case-dot"),
    pytest.param("example.com.", None, id="denied-dot"),
    pytest.param("Evil.PythonHosted.org.Evil.Test", None, id="wildcard-as-prefix"),
]


@pytest.mark.parametrize(("wire_name", "pattern"), WIRE_MATCH_TABLE)
def test_matcher_wire_names(matcher: HostMatcher, wire_name: str, pattern: str | None) -> None:
    name = canonical_name(wire_name)
    assert name is not None
    rule = matcher.match(name)
    assert (rule.pattern if rule else None) == pattern


def test_matcher_exact_before_wildcard() -> None:
    matcher = HostMatcher(parse_rules(["*.example.com", "api.example.com"]))
    assert matcher.match("api.example.com") == HostRule("api.example.com", "exact")


def test_matcher_longest_wildcard() -> None:
    matcher = HostMatcher(parse_rules(["*.example.com", "*.a.example.com"]))
    assert matcher.match("x.a.example.com") == HostRule("*.a.example.com", "wildcard")


def test_matcher_nested_wildcard_apex() -> None:
    matcher = HostMatcher(parse_rules(["*.example.com", "*.a.example.com"]))
    assert matcher.match("a.example.com") == HostRule("*.example.com", "wildcard")


def test_matcher_empty() -> None:
    assert HostMatcher([]).match("pypi.org") is None


def test_matcher_len() -> None:
    assert len(HostMatcher(parse_rules(["pypi.org", "*.pythonhosted.org", "pypi.org"]))) == 2


# canonical_name: names off the wire

CANONICAL_NAMES = [
    pytest.param("pypi.org", "pypi.org", id="plain"),
    pytest.param("PYPI.ORG.", "pypi.org", id="upper-dot"),
    pytest.param("pYpI.oRg", "pypi.org", id="mixed-case"),
    pytest.param("E1.CDN.test.", "e1.cdn.test", id="cname-owner"),
    pytest.param("_https._tcp.example.com", "_https._tcp.example.com", id="underscore"),
    pytest.param("-a.example.com", "-a.example.com", id="hyphen-start"),
    pytest.param("r3---sn-abc.example", "r3---sn-abc.example", id="inner-hyphens"),
    pytest.param("Bücher.example", "xn--bcher-kva.example", id="idna"),
    pytest.param("xn--bcher-kva.example.", "xn--bcher-kva.example", id="a-label"),
    pytest.param(NAME_253 + ".", NAME_253, id="name-253"),
    pytest.param("123.example", "123.example", id="numeric-inner-label"),
    pytest.param("", None, id="empty"),
    pytest.param(".", None, id="root"),
    pytest.param("pypi..org", None, id="double-dot"),
    pytest.param("pypi.org..", None, id="two-trailing-dots"),
    pytest.param(".pypi.org", None, id="leading-dot"),
    pytest.param("192.0.2.10", None, id="ipv4"),
    pytest.param("127.1", None, id="short-ipv4"),
    pytest.param("0x7f000001", None, id="hex-ipv4"),
    pytest.param("2001:db8::1", None, id="ipv6"),
    pytest.param("[2001:db8::1]", None, id="ipv6-brackets"),
    pytest.param("*.example.com", None, id="star"),
    pytest.param("pypi org", None, id="space"),
    pytest.param("pypi.org:443", None, id="port"),
    pytest.param("b\\195\\188cher.example", None, id="escaped-octets"),
    pytest.param("a" * 64 + ".example", None, id="label-64"),
    pytest.param(NAME_254, None, id="name-254"),
    pytest.param("\U0001f4a9.la", None, id="emoji"),
]


@pytest.mark.parametrize(("wire_name", "expected"), CANONICAL_NAMES)
def test_canonical_name(wire_name: str, expected: str | None) -> None:
    assert canonical_name(wire_name) == expected


# parse_rules


def test_parse_rules_collapses_duplicates() -> None:
    rules = parse_rules(["pypi.org", "PYPI.org.", "*.pythonhosted.org", "pypi.org"])
    assert [rule.pattern for rule in rules] == ["pypi.org", "*.pythonhosted.org"]


def test_parse_rules_keeps_order() -> None:
    rules = parse_rules(["b.example", "a.example", "c.example"])
    assert [rule.pattern for rule in rules] == ["b.example", "a.example", "c.example"]


def test_parse_rules_error_indexes() -> None:
    with pytest.raises(InvalidHostsError) as excinfo:
        parse_rules(["pypi.org", "pypi.org:443", "ok.example", "*.com"])
    found = [(index, error.reason) for index, error in excinfo.value.errors]
    assert found == [(1, "has_port"), (3, "public_suffix_wildcard")]


def test_parse_rules_error_message() -> None:
    with pytest.raises(InvalidHostsError, match="entry 1: invalid host 'pypi.org:443'"):
        parse_rules(["pypi.org", "pypi.org:443"])


def test_parse_rules_force() -> None:
    assert parse_rules(["*.com"], force=True) == [HostRule("*.com", "wildcard")]


def test_parse_rules_empty() -> None:
    assert parse_rules([]) == []


def test_parse_rules_rejects_string() -> None:
    with pytest.raises(TypeError):
        parse_rules("pypi.org")


# Agreement with the SDK's normalisation vectors

SDK_HOSTS = [
    pytest.param(case["host"], id=repr(case["input"])) for case in VECTORS if "host" in case
]
SDK_ERRORS = [
    pytest.param(case["input"], case["error"], id=repr(case["input"]))
    for case in VECTORS
    if "error" in case
]


@pytest.mark.parametrize("host", SDK_HOSTS)
def test_parse_rule_accepts_sdk_output(host: str) -> None:
    assert parse_rule(host, force=True).pattern == host


@pytest.mark.parametrize(("text", "reason"), SDK_ERRORS)
def test_parse_rule_rejects_sdk_rejections(text: str, reason: str) -> None:
    error = _parse_error(text, force=True)
    # The daemon names the URL part first, because it takes no URLs at all.
    assert error.reason == reason or isinstance(error, UrlPartError)


# Properties

LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
# A last label that starts with a letter is never numeric.
TOP_LABEL = st.from_regex(r"[a-z](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
NAMES = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(LABEL, max_size=4),
    TOP_LABEL,
)


@given(name=NAMES, prefix=st.lists(LABEL, min_size=1, max_size=3))
def test_wildcard_matches_names_below(name: str, prefix: list[str]) -> None:
    rule = parse_rule("*." + name, force=True)
    assert HostMatcher([rule]).match(".".join(prefix) + "." + name) == rule


@given(name=NAMES)
def test_wildcard_skips_apex(name: str) -> None:
    assert HostMatcher([parse_rule("*." + name, force=True)]).match(name) is None


@given(name=NAMES, glued=LABEL)
def test_wildcard_needs_label_boundary(name: str, glued: str) -> None:
    assert HostMatcher([parse_rule("*." + name, force=True)]).match(glued + name) is None


@given(name=NAMES)
def test_canonical_name_agrees_with_rule(name: str) -> None:
    assert canonical_name(name.upper() + ".") == parse_rule(name).pattern
