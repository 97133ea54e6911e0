"""Host rules of the egress allowlist: parsing, canonical names and matching.

A rule is a host name (``pypi.org``) or a wildcard (``*.pythonhosted.org``). An exact rule
matches that one name. A wildcard matches every name below its suffix at any depth, and
never the suffix itself. Rules and names are compared in canonical form: lower case, no
trailing dot, and internationalised labels as A-labels (IDNA 2008 with the UTS 46 mapping,
non-transitional, as the ``idna`` package implements it).

The API, the DNS proxy and the TLS SNI / HTTP Host gateway all use this module, so a rule
means the same on every path. The module does no I/O.

Two choices are deliberate:

- Underscore. Rules reject ``_`` because a rule names a host, and host names contain only
  letters, digits and hyphens (RFC 952 and RFC 1123). Names from the wire
  (``canonical_name``) may contain ``_``, because DNS uses it in service labels
  (``_https._tcp.example.com``). Such a name below an allowed wildcard is then judged by
  the policy instead of being dropped as malformed.
- Public suffixes. A wildcard directly on a public suffix needs ``force``. The check uses
  the whole Public Suffix List bundled with the ``publicsuffixlist`` package, including
  its private section. That section lists domains where anyone can get a subdomain
  (``github.io``, ``s3.amazonaws.com``, ``cloudfront.net``), so a wildcard there lets a
  sandbox reach names that strangers control, the same risk as ``*.com``. A top-level
  label that the list does not know (``*.internal``) counts as public too.

``parse_rule`` raises for the first problem it finds, checking in this order:

1. Empty entry, whitespace anywhere.
2. User info, IP literal, percent-encoding, invalid port number.
3. Scheme, port, path, query or fragment. The error is named after the first one present.
4. The name: UTS 46 mapping, the root name ``.``, leading dot, empty label, wildcard
   placement, dotted-quad IPv4, then label by label IDNA, characters, hyphens and
   length, then total length and numeric last label.
5. A wildcard on a public suffix.

runta/urls.py in the SDK repeats steps 1, 2 and 4 and must keep the same order.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

import idna
from publicsuffixlist import PublicSuffixList

# Limits of the text form without the trailing dot (RFC 1035 section 2.3.4: 63 octets per
# label, 255 octets on the wire, which leaves 253 characters of text).
MAX_LABEL_LENGTH = 63
MAX_NAME_LENGTH = 253

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|//")
_PORT = re.compile(r"[0-9]{1,5}")
_DIGITS = re.compile(r"[0-9]+")
_LDH_CHARACTER = re.compile(r"[a-z0-9-]")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
# Last labels that WHATWG URL parsers read as a number, so they parse the name as IPv4.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Names off the wire: labels of letters, digits, hyphens and underscores.
_WIRE_NAME = re.compile(r"(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}")
# An entry that is already a plain rule once lower-cased: LDH labels of 1 to 63
# characters, an optional '*.' in front and an optional trailing dot.
_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_RULE = re.compile(rf"(?:\*\.)?(?:{_LDH_LABEL}\.)*{_LDH_LABEL}\.?")


# Errors


class InvalidHostError(ValueError):
    """Base of the errors for an allowlist entry that is not a valid host rule.

    ``host`` is the entry as given and ``reason`` a stable machine-readable code.
    ``problem`` is the part of the message that describes what is wrong, and
    ``suggestion`` the canonical bare host to use instead, or None if none can be derived.
    """

    reason: ClassVar[str] = "invalid_host"

    def __init__(self, host: str, problem: str, fix: str, *, suggestion: str | None = None) -> None:
        self.host = host
        self.problem = problem
        self.suggestion = suggestion
        super().__init__(f"invalid host {host!r}: {problem}. {fix}.")


class EmptyHostError(InvalidHostError):
    reason = "empty"

    def __init__(self, host: str) -> None:
        super().__init__(host, "the host name is empty", "Give a host name such as 'pypi.org'")


class WhitespaceError(InvalidHostError):
    reason = "has_whitespace"

    def __init__(self, host: str, suggestion: str | None) -> None:
        if suggestion is None:
            fix = "Remove the whitespace"
        else:
            fix = f"Remove the whitespace and use {suggestion!r}"
        super().__init__(host, "the entry contains whitespace", fix, suggestion=suggestion)


class UserInfoError(InvalidHostError):
    reason = "has_userinfo"

    def __init__(self, host: str, suggestion: str | None) -> None:
        if suggestion is None:
            fix = "Give the bare host name"
        else:
            fix = (
                f"The host of this entry is {suggestion!r}, so use that if it is the host you mean"
            )
        problem = "user info before '@' is not allowed in an allowlist entry"
        super().__init__(host, problem, fix, suggestion=suggestion)


class UrlPartError(InvalidHostError):
    """Base of the errors for an entry that is a URL or carries a port."""

    def __init__(
        self, host: str, parts: list[str], suggestion: str | None, host_problem: str | None
    ) -> None:
        problem = "the allowlist takes bare host names, without " + _join_words(parts)
        if suggestion is not None:
            fix = f"Use {suggestion!r}"
        else:
            fix = f"The rest is not a valid host name either: {host_problem}"
        if "port" in parts:
            fix += ". Ports are not part of the policy"
        super().__init__(host, problem, fix, suggestion=suggestion)


class SchemeError(UrlPartError):
    reason = "has_scheme"


class PortError(UrlPartError):
    reason = "has_port"


class PathError(UrlPartError):
    reason = "has_path"


class QueryError(UrlPartError):
    reason = "has_query"


class FragmentError(UrlPartError):
    reason = "has_fragment"


class BadPortError(InvalidHostError):
    reason = "bad_port"

    def __init__(self, host: str, port: str, suggestion: str | None) -> None:
        problem = f"{port!r} after ':' is not a port number"
        fix = "Ports are not part of the policy, so give the host name alone"
        if suggestion is not None:
            fix += f": {suggestion!r}"
        super().__init__(host, problem, fix, suggestion=suggestion)


class IPLiteralError(InvalidHostError):
    reason = "ip_literal"

    def __init__(self, host: str) -> None:
        problem = "the allowlist takes host names, not addresses"
        super().__init__(host, problem, "Give the host name that the sandbox connects to")


class PercentEncodedError(InvalidHostError):
    reason = "percent_encoded"

    def __init__(self, host: str) -> None:
        problem = "percent-encoding is not allowed in a host name"
        super().__init__(host, problem, "Write the host name without '%' escapes")


class EmptyLabelError(InvalidHostError):
    reason = "empty_label"

    def __init__(self, host: str) -> None:
        problem = "the name has an empty label (two dots in a row, or only a dot)"
        super().__init__(host, problem, "Remove the extra dot")


class LeadingDotError(InvalidHostError):
    reason = "leading_dot"

    def __init__(self, host: str, domain: str | None) -> None:
        if domain is None:
            fix = "Remove the leading dot"
        else:
            fix = (
                f"Use '*.{domain}' for the names below {domain}, and add {domain!r} "
                "as well to allow that name itself"
            )
        super().__init__(host, "a leading dot is not allowed", fix)


class BadCharacterError(InvalidHostError):
    reason = "bad_character"

    def __init__(self, host: str, character: str) -> None:
        problem = f"{character!r} is not allowed in a host name"
        fix = "Host names contain only letters, digits, hyphens and dots"
        super().__init__(host, problem, fix)


class LabelHyphenError(InvalidHostError):
    reason = "bad_hyphen"

    def __init__(self, host: str, label: str) -> None:
        problem = f"the label {label!r} starts or ends with '-'"
        super().__init__(host, problem, "A label must begin and end with a letter or digit")


class LabelTooLongError(InvalidHostError):
    reason = "label_too_long"

    def __init__(self, host: str, label: str) -> None:
        problem = f"the label {label!r} is {len(label)} octets long"
        super().__init__(host, problem, f"A label has at most {MAX_LABEL_LENGTH} octets")


class NameTooLongError(InvalidHostError):
    reason = "name_too_long"

    def __init__(self, host: str, length: int) -> None:
        problem = f"the name is {length} octets long"
        super().__init__(host, problem, f"A host name has at most {MAX_NAME_LENGTH} octets")


class BareWildcardError(InvalidHostError):
    reason = "bare_wildcard"

    def __init__(self, host: str) -> None:
        problem = "a lone '*' would match every host"
        fix = "List the hosts, or disable enforcement to allow all traffic"
        super().__init__(host, problem, fix)


class MisplacedWildcardError(InvalidHostError):
    reason = "misplaced_wildcard"

    def __init__(self, host: str, domain: str | None) -> None:
        problem = "'*' is allowed only as the whole first label, as in '*.example.com'"
        if domain is None:
            fix = "Move the '*' to the front or list the hosts"
        else:
            fix = f"To match the names below {domain}, use '*.{domain}'"
        super().__init__(host, problem, fix)


class NumericTLDError(InvalidHostError):
    reason = "numeric_tld"

    def __init__(self, host: str, label: str) -> None:
        problem = (
            f"the last label {label!r} is numeric, so URL parsers read the name as an IPv4 address"
        )
        super().__init__(host, problem, "The allowlist takes host names, not addresses")


class InvalidIDNAError(InvalidHostError):
    reason = "invalid_idna"

    def __init__(self, host: str, detail: str) -> None:
        problem = f"not a valid internationalised name under IDNA 2008 ({detail})"
        super().__init__(host, problem, "Check the spelling of the name")


class PublicSuffixWildcardError(InvalidHostError):
    reason = "public_suffix_wildcard"

    def __init__(self, host: str, suffix: str) -> None:
        problem = (
            f"{suffix!r} is a public suffix, so the wildcard matches names that anyone can register"
        )
        fix = (
            "List the hosts you need, or allow the wildcard anyway with --force"
            " (force: true in the API)"
        )
        super().__init__(host, problem, fix)
        self.suffix = suffix


class InvalidHostsError(ValueError):
    """Errors for a list of entries, each with its index in the list.

    Not a subclass of InvalidHostError, because it is about several hosts at once.
    """

    def __init__(self, errors: list[tuple[int, InvalidHostError]]) -> None:
        self.errors = errors
        details = "; ".join(f"entry {index}: {error}" for index, error in errors)
        super().__init__(f"{len(errors)} invalid host entries: {details}")


# Rules and matching


@dataclass(frozen=True, slots=True)
class HostRule:
    """One canonical allowlist entry. Build it with ``parse_rule``."""

    pattern: str
    kind: Literal["exact", "wildcard"]

    def __post_init__(self) -> None:
        if (self.kind == "wildcard") != self.pattern.startswith("*."):
            raise ValueError(
                f"host rule {self.pattern!r} does not fit kind {self.kind!r}. "
                "Build rules with parse_rule()"
            )

    @property
    def suffix(self) -> str | None:
        """Domain below which a wildcard matches (``pythonhosted.org``), None for exact rules."""
        return self.pattern[2:] if self.kind == "wildcard" else None

    def matches(self, name: str) -> bool:
        """Return whether the canonical ``name`` is allowed by this rule."""
        if self.kind == "exact":
            return name == self.pattern
        suffix = self.pattern[1:]
        return name.endswith(suffix) and len(name) > len(suffix)

    def to_text(self) -> str:
        return self.pattern


class HostMatcher:
    """Set of rules that finds the rule for a name in time linear in the name's labels.

    An exact rule wins over a wildcard, and a longer wildcard suffix wins over a shorter
    one. Names must be canonical (see ``canonical_name``).
    """

    def __init__(self, rules: Iterable[HostRule]) -> None:
        self._exact: dict[str, HostRule] = {}
        self._wildcards: dict[str, HostRule] = {}
        for rule in rules:
            if rule.kind == "exact":
                self._exact.setdefault(rule.pattern, rule)
            else:
                self._wildcards.setdefault(rule.pattern[2:], rule)

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcards)

    def match(self, name: str) -> HostRule | None:
        """Return the rule that allows ``name``, or None when no rule does."""
        rule = self._exact.get(name)
        if rule is not None or not self._wildcards:
            return rule

        # Try each parent domain, longest first. Cutting at dots keeps label boundaries,
        # and starting after the first label keeps a wildcard off its own apex.
        dot = name.find(".", 1)
        while dot != -1:
            rule = self._wildcards.get(name[dot + 1 :])
            if rule is not None:
                return rule
            dot = name.find(".", dot + 1)
        return None


# Names off the wire


def canonical_name(name: str) -> str | None:
    """Return the canonical form of a DNS qname, SNI or Host name, or None if it is invalid.

    Lower-cases, removes one trailing dot and converts non-ASCII labels to A-labels.
    Accepts labels of letters, digits, hyphens and underscores, and rejects a numeric last
    label. Unlike rules, A-labels are not decoded and checked, so ASCII names never reach
    the much slower ``idna`` package.
    """
    if not name.isascii():
        try:
            name = _to_ascii(name)
        except UnicodeError:  # idna.IDNAError and codec errors derive from it
            return None
    name = name.lower()
    name = name.removesuffix(".")
    if len(name) > MAX_NAME_LENGTH or _WIRE_NAME.fullmatch(name) is None:
        return None
    if _NUMERIC_LABEL.fullmatch(name.rpartition(".")[2]) is not None:
        return None
    return name


def _to_ascii(name: str) -> str:
    """Map ``name`` with UTS 46 and encode its non-ASCII labels as A-labels."""
    mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
    labels = [
        label if label.isascii() else idna.alabel(label).decode("ascii")
        for label in mapped.split(".")
    ]
    return ".".join(labels)


# Parsing entries


def parse_rule(text: str, *, force: bool = False) -> HostRule:
    """Validate one allowlist entry and return it as a canonical rule.

    Raises a subclass of InvalidHostError for an invalid entry, and
    PublicSuffixWildcardError for a wildcard on a public suffix unless ``force`` is set.
    """
    if not isinstance(text, str):
        raise TypeError(f"host entry must be a string, not {type(text).__name__}")
    pattern = _plain_pattern(text)
    if pattern is not None:
        return _rule_for_pattern(text, pattern, force)
    if text == "":
        raise EmptyHostError(text)
    if any(character.isspace() for character in text):
        stripped = text.strip()
        if any(character.isspace() for character in stripped):
            raise WhitespaceError(text, None)
        raise WhitespaceError(text, _suggest(stripped))

    url = _split_url(text)
    pattern, host_error = _try_pattern(text, url.host)
    if url.userinfo is not None:
        raise UserInfoError(text, pattern)
    if isinstance(host_error, IPLiteralError):
        raise host_error
    if "%" in url.host or (url.port is not None and "%" in url.port):
        raise PercentEncodedError(text)
    if url.port is not None and not _is_port(url.port):
        # Suggest the host only when the port is a number, so 'https:pypi.org' does not
        # become 'https'.
        digits = _DIGITS.fullmatch(url.port) is not None
        raise BadPortError(text, url.port, pattern if digits else None)

    parts = url.extra_parts()
    if parts:
        problem = None if host_error is None else host_error.problem
        raise _URL_PART_ERRORS[parts[0]](text, parts, pattern, problem)
    if host_error is not None:
        raise host_error
    assert pattern is not None
    return _rule_for_pattern(text, pattern, force)


def _plain_pattern(text: str) -> str | None:
    """Return the canonical pattern of an entry that is a plain host name or wildcard, else None.

    A shortcut for the usual entry, which the full checks of parse_rule would accept
    unchanged but for case and a trailing dot. It returns None for every entry that
    needs those checks: non-ASCII text, anything but LDH labels, an A-label ('xn--'),
    a name too long and a numeric last label (dotted quads included).
    """
    if not text.isascii():
        return None
    pattern = text.lower()
    if _PLAIN_RULE.fullmatch(pattern) is None:
        return None
    pattern = pattern.removesuffix(".")
    if len(pattern) > MAX_NAME_LENGTH or "xn--" in pattern:
        return None
    if _NUMERIC_LABEL.fullmatch(pattern.rpartition(".")[2]) is not None:
        return None
    return pattern


def _rule_for_pattern(text: str, pattern: str, force: bool) -> HostRule:
    """Build the rule for a canonical pattern, raising for a wildcard on a public suffix."""
    if pattern.startswith("*."):
        if not force and _is_public_suffix(pattern[2:]):
            raise PublicSuffixWildcardError(text, pattern[2:])
        return HostRule(pattern, "wildcard")
    return HostRule(pattern, "exact")


def parse_rules(texts: Iterable[str], *, force: bool = False) -> list[HostRule]:
    """Parse all entries or none, dropping duplicates after canonicalisation.

    Raises InvalidHostsError with every invalid entry and its index. The returned rules
    keep the order of their first occurrence.
    """
    if isinstance(texts, str):
        raise TypeError("parse_rules() takes a list of host entries, not one string")

    # Keyed by pattern, which also fixes the kind, because hashing a str is cheaper than
    # hashing a HostRule.
    rules: dict[str, HostRule] = {}
    errors: list[tuple[int, InvalidHostError]] = []
    for index, text in enumerate(texts):
        try:
            rule = parse_rule(text, force=force)
        except InvalidHostError as error:
            errors.append((index, error))
            continue
        rules.setdefault(rule.pattern, rule)

    if errors:
        raise InvalidHostsError(errors)
    return list(rules.values())


@dataclass(frozen=True)
class _Url:
    """An entry cut into URL parts. Parts absent from the entry are None."""

    scheme: str | None
    userinfo: str | None
    host: str
    port: str | None
    path: str | None
    query: str | None
    fragment: str | None

    def extra_parts(self) -> list[str]:
        """Return the names of the parts present besides the host, in URL order."""
        values = [self.scheme, self.port, self.path, self.query, self.fragment]
        return [name for name, value in zip(_URL_PARTS, values) if value is not None]


_URL_PARTS = ("scheme", "port", "path", "query", "fragment")
_URL_PART_ERRORS: dict[str, type[UrlPartError]] = {
    "scheme": SchemeError,
    "port": PortError,
    "path": PathError,
    "query": QueryError,
    "fragment": FragmentError,
}


def _split_url(text: str) -> _Url:
    """Cut ``text`` into URL parts without validating any of them.

    The authority ends at the first '/', '?' or '#'. User info ends at the last '@' of
    the authority. A host that starts with '[' or has more than one ':' is kept whole,
    because it can only be an IPv6 literal.
    """
    scheme_match = _SCHEME.match(text)
    scheme = scheme_match.group() if scheme_match else None
    rest = text[scheme_match.end() :] if scheme_match else text

    end = len(rest)
    for delimiter in "/?#":
        position = rest.find(delimiter)
        if position != -1:
            end = min(end, position)
    authority, rest = rest[:end], rest[end:]

    rest, hash_sign, fragment = rest.partition("#")
    path, question_mark, query = rest.partition("?")

    userinfo, at_sign, host = authority.rpartition("@")
    port: str | None = None
    if not _is_ipv6_like(host):
        host, colon, port_text = host.partition(":")
        port = port_text if colon else None

    return _Url(
        scheme=scheme,
        userinfo=userinfo if at_sign else None,
        host=host,
        port=port,
        path=path or None,
        query=query if question_mark else None,
        fragment=fragment if hash_sign else None,
    )


def _is_ipv6_like(host: str) -> bool:
    return host.startswith("[") or host.count(":") > 1


def _is_port(text: str) -> bool:
    return _PORT.fullmatch(text) is not None and int(text) <= 65535


def _try_pattern(entry: str, host: str) -> tuple[str | None, InvalidHostError | None]:
    try:
        return _canonical_pattern(entry, host), None
    except InvalidHostError as error:
        return None, error


def _suggest(text: str) -> str | None:
    try:
        return parse_rule(text, force=True).pattern
    except InvalidHostError:
        return None


def _canonical_pattern(entry: str, host: str) -> str:
    """Return the canonical pattern for the bare ``host`` of ``entry`` or raise."""
    if _is_ipv6_like(host):
        raise IPLiteralError(entry)
    if host == "":
        raise EmptyHostError(entry)
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except idna.IDNAError as error:
            raise InvalidIDNAError(entry, str(error)) from error
    host = host.lower()

    if host == ".":
        raise EmptyLabelError(entry)
    host = host.removesuffix(".")
    if host.startswith("."):
        raise LeadingDotError(entry, _leading_dot_domain(host[1:]))
    labels = host.split(".")
    if "" in labels:
        raise EmptyLabelError(entry)
    _check_wildcard(entry, labels)
    if _DOTTED_QUAD.fullmatch(host) is not None:
        raise IPLiteralError(entry)

    start = 1 if labels[0] == "*" else 0
    for index in range(start, len(labels)):
        labels[index] = _canonical_label(entry, labels[index])

    pattern = ".".join(labels)
    if len(pattern) > MAX_NAME_LENGTH:
        raise NameTooLongError(entry, len(pattern))
    if _NUMERIC_LABEL.fullmatch(labels[-1]) is not None:
        raise NumericTLDError(entry, labels[-1])
    return pattern


def _leading_dot_domain(rest: str) -> str | None:
    """Return the exact name after a leading dot, or None if it is not one."""
    try:
        pattern = _canonical_pattern(rest, rest)
    except InvalidHostError:
        return None
    return None if pattern.startswith("*.") else pattern


def _check_wildcard(entry: str, labels: list[str]) -> None:
    if labels == ["*"]:
        raise BareWildcardError(entry)
    for index, label in enumerate(labels):
        if "*" in label and (index > 0 or label != "*"):
            raise MisplacedWildcardError(entry, _wildcard_domain(labels))


def _wildcard_domain(labels: list[str]) -> str | None:
    """Guess the domain meant by a misplaced wildcard, for the error message.

    '*pythonhosted.org' and 'files*.pythonhosted.org' both suggest pythonhosted.org.
    Return None when the guess would contain a '*' or be a single label.
    """
    first = labels[0]
    rest = labels[1:]
    name = first.lstrip("*")
    if name and "*" not in name:
        rest = [name, *rest]
    domain = ".".join(rest)
    if "*" in domain or len(rest) < 2:
        return None
    return domain


def _canonical_label(entry: str, label: str) -> str:
    """Return one label of the name as a checked A-label or LDH label, or raise."""
    try:
        if not label.isascii():
            # idna.alabel() would reject a long result as invalid IDNA. The length check
            # below reports it as too long instead.
            idna.check_label(label)
            label = "xn--" + label.encode("punycode").decode("ascii")
        elif label.startswith("xn--"):
            idna.ulabel(label)
    except UnicodeError as error:  # idna.IDNAError and codec errors derive from it
        raise InvalidIDNAError(entry, str(error)) from error

    for character in label:
        if _LDH_CHARACTER.fullmatch(character) is None:
            raise BadCharacterError(entry, character)
    if label.startswith("-") or label.endswith("-"):
        raise LabelHyphenError(entry, label)
    if len(label) > MAX_LABEL_LENGTH:
        raise LabelTooLongError(entry, label)
    return label


@functools.cache
def _public_suffix_list() -> PublicSuffixList:
    # Parses the copy of the list bundled with the package, once per process.
    return PublicSuffixList(accept_unknown=True, only_icann=False)


def _is_public_suffix(domain: str) -> bool:
    return bool(_public_suffix_list().is_public(domain))


def _join_words(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]
