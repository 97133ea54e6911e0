"""Normalisation of URLs and host names into allowlist entries.

``normalize_host`` takes what a user has at hand (``https://PyPI.org/simple``,
``pypi.org:443``, ``Bücher.example``) and returns the bare canonical host that runtad
stores: lower case, no trailing dot, internationalised labels as A-labels (IDNA 2008 with
the UTS 46 mapping, non-transitional). A ``*.`` wildcard is kept. runtad applies the same
name rules to the result and also rejects a wildcard on a public suffix, which this
module leaves to it.

The JS SDK implements the same steps and must agree on every case in
tests/vectors/host_normalization.json. The steps, in order, with the ``reason`` of the
first one that fails:

1. ``""`` is ``empty``. Any whitespace is ``has_whitespace``, because input is never stripped.
2. A scheme (``[A-Za-z][A-Za-z0-9+.-]*://``) or a leading ``//`` is removed. The
   authority ends at the first ``/``, ``?`` or ``#``, and the rest of the URL is dropped.
3. Any ``@`` in the authority is ``has_userinfo``. Otherwise, a host part that starts
   with ``[`` or contains more than one ``:`` is ``ip_literal``. Otherwise, the host and
   the port are split at the ``:``.
4. The host is checked as a name (step 6). If that check finds a dotted-quad IPv4
   address, the result is ``ip_literal`` at this point.
5. A ``%`` in host or port is ``percent_encoded``. A port that is not 1 to 5 digits up to
   65535 is ``bad_port``.
6. The name: empty host is ``empty``. Non-ASCII input goes through the UTS 46 mapping
   (``invalid_idna``), then the name is lower-cased. ``.`` is ``empty_label``. One
   trailing dot is removed. A leading dot is ``leading_dot``, an empty label
   ``empty_label``. A lone ``*`` is ``bare_wildcard``, and a ``*`` anywhere but as the
   whole first label is ``misplaced_wildcard``. A dotted quad of decimal octets is
   ``ip_literal``. Then, label by label from the left: non-ASCII labels become A-labels
   and ``xn--`` labels must decode (``invalid_idna``). Only ``a-z``, ``0-9`` and ``-``
   may remain (``bad_character``), a label may not begin or end with ``-``
   (``bad_hyphen``), and its A-label has at most 63 octets (``label_too_long``). The
   whole name has at most 253 octets (``name_too_long``). A last label of digits only,
   or ``0x`` and hex digits, is ``numeric_tld``, because URL parsers read such a name as
   an IPv4 address.
7. When a port was dropped, a PortIgnoredWarning is emitted.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import idna

MAX_LABEL_LENGTH = 63
MAX_NAME_LENGTH = 253

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|//")
_PORT = re.compile(r"[0-9]{1,5}")
_LDH_CHARACTER = re.compile(r"[a-z0-9-]")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


class InvalidHostError(ValueError):
    """A value that cannot be turned into an allowlist entry.

    ``host`` is the value as given and ``reason`` a stable code shared with runtad and
    the JS SDK, such as ``has_userinfo`` or ``ip_literal``.
    """

    def __init__(self, host: str, reason: str, problem: str, fix: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"invalid host {host!r}: {problem}. {fix}.")


class PortIgnoredWarning(UserWarning):
    """A port was dropped from a URL, because ports are not part of the egress policy."""


def normalize_host(value: str) -> str:
    """Return the bare canonical host of a URL or host name, for the egress allowlist.

    Drops scheme, path, query and fragment, and drops a port with a PortIgnoredWarning.
    Raises InvalidHostError for user info, IP literals and anything that is not a valid
    host name or ``*.`` wildcard.
    """
    if not isinstance(value, str):
        raise TypeError(f"host must be a string, not {type(value).__name__}")
    if value == "":
        raise InvalidHostError(
            value, "empty", "the host name is empty", "Give a host name such as 'pypi.org'"
        )
    if any(character.isspace() for character in value):
        raise InvalidHostError(
            value, "has_whitespace", "the value contains whitespace", "Remove the whitespace"
        )

    url = _split_url(value)
    try:
        host, host_error = _canonical_name(value, url.host), None
    except InvalidHostError as error:
        host, host_error = None, error

    if url.userinfo is not None:
        raise _userinfo_error(value, host)
    if host_error is not None and host_error.reason == "ip_literal":
        raise host_error
    if "%" in url.host or (url.port is not None and "%" in url.port):
        raise InvalidHostError(
            value,
            "percent_encoded",
            "percent-encoding is not allowed in a host name",
            "Write the host name without '%' escapes",
        )
    if url.port is not None and not _is_port(url.port):
        raise InvalidHostError(
            value,
            "bad_port",
            f"{url.port!r} after ':' is not a port number",
            "Give a port from 0 to 65535, or no port",
        )
    if host_error is not None:
        raise host_error
    assert host is not None

    if url.port is not None:
        warnings.warn(
            f"port {url.port} of {value!r} was dropped: ports are not part of the egress "
            f"policy, so {host!r} allows every port",
            PortIgnoredWarning,
            stacklevel=2,
        )
    return host


def _userinfo_error(value: str, host: str | None) -> InvalidHostError:
    if host is None:
        fix = "Give the bare host name"
    else:
        fix = f"The host of this URL is {host!r}. Give that if it is the host you mean"
    problem = "user info before '@' is not allowed, because it hides the real host"
    return InvalidHostError(value, "has_userinfo", problem, fix)


@dataclass(frozen=True)
class _Url:
    """A value cut into the URL parts that matter here. Absent parts are None."""

    userinfo: str | None
    host: str
    port: str | None


def _split_url(value: str) -> _Url:
    """Cut ``value`` into user info, host and port without validating them."""
    scheme = _SCHEME.match(value)
    rest = value[scheme.end() :] if scheme else value

    end = len(rest)
    for delimiter in "/?#":
        position = rest.find(delimiter)
        if position != -1:
            end = min(end, position)
    authority = rest[:end]

    # User info ends at the last '@', as WHATWG URL parsers read it.
    userinfo, at_sign, host = authority.rpartition("@")
    port: str | None = None
    if not _is_ipv6_like(host):
        host, colon, port_text = host.partition(":")
        port = port_text if colon else None
    return _Url(userinfo=userinfo if at_sign else None, host=host, port=port)


def _is_ipv6_like(host: str) -> bool:
    return host.startswith("[") or host.count(":") > 1


def _is_port(text: str) -> bool:
    return _PORT.fullmatch(text) is not None and int(text) <= 65535


def _canonical_name(value: str, host: str) -> str:
    """Return the canonical name or wildcard for the bare ``host`` of ``value``, or raise."""
    if _is_ipv6_like(host):
        raise _ip_literal_error(value)
    if host == "":
        raise InvalidHostError(
            value, "empty", "the host name is empty", "Give a host name such as 'pypi.org'"
        )
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except idna.IDNAError as error:
            raise _idna_error(value, error) from error
    host = host.lower()

    if host == ".":
        raise _empty_label_error(value)
    host = host.removesuffix(".")
    if host.startswith("."):
        raise InvalidHostError(
            value,
            "leading_dot",
            "a leading dot is not allowed",
            "Use '*.' followed by the domain for the names below it, and add the domain "
            "itself to allow that name too",
        )
    labels = host.split(".")
    if "" in labels:
        raise _empty_label_error(value)
    _check_wildcard(value, labels)
    if _DOTTED_QUAD.fullmatch(host) is not None:
        raise _ip_literal_error(value)

    start = 1 if labels[0] == "*" else 0
    for index in range(start, len(labels)):
        labels[index] = _canonical_label(value, labels[index])

    name = ".".join(labels)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidHostError(
            value,
            "name_too_long",
            f"the name is {len(name)} octets long",
            f"A host name has at most {MAX_NAME_LENGTH} octets",
        )
    if _NUMERIC_LABEL.fullmatch(labels[-1]) is not None:
        raise InvalidHostError(
            value,
            "numeric_tld",
            f"the last label {labels[-1]!r} is numeric, so URL parsers read the name as an "
            "IPv4 address",
            "The allowlist takes host names, not addresses",
        )
    return name


def _check_wildcard(value: str, labels: list[str]) -> None:
    if labels == ["*"]:
        raise InvalidHostError(
            value,
            "bare_wildcard",
            "a lone '*' would match every host",
            "List the hosts, or disable enforcement to allow all traffic",
        )
    for index, label in enumerate(labels):
        if "*" in label and (index > 0 or label != "*"):
            raise InvalidHostError(
                value,
                "misplaced_wildcard",
                "'*' is allowed only as the whole first label, as in '*.example.com'",
                "Move the '*' to the front or list the hosts",
            )


def _canonical_label(value: str, label: str) -> str:
    """Return one label as a checked A-label or letters-digits-hyphens label, or raise."""
    try:
        if not label.isascii():
            # idna.alabel() would reject a long result as invalid IDNA. The length check
            # below reports it as too long instead.
            idna.check_label(label)
            label = "xn--" + label.encode("punycode").decode("ascii")
        elif label.startswith("xn--"):
            idna.ulabel(label)
    except UnicodeError as error:  # idna.IDNAError and codec errors derive from it
        raise _idna_error(value, error) from error

    for character in label:
        if _LDH_CHARACTER.fullmatch(character) is None:
            raise InvalidHostError(
                value,
                "bad_character",
                f"{character!r} is not allowed in a host name",
                "Host names contain only letters, digits, hyphens and dots",
            )
    if label.startswith("-") or label.endswith("-"):
        raise InvalidHostError(
            value,
            "bad_hyphen",
            f"the label {label!r} starts or ends with '-'",
            "A label must begin and end with a letter or digit",
        )
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidHostError(
            value,
            "label_too_long",
            f"the label {label!r} is {len(label)} octets long",
            f"A label has at most {MAX_LABEL_LENGTH} octets",
        )
    return label


def _ip_literal_error(value: str) -> InvalidHostError:
    return InvalidHostError(
        value,
        "ip_literal",
        "the allowlist takes host names, not addresses",
        "Give the host name that the sandbox connects to",
    )


def _empty_label_error(value: str) -> InvalidHostError:
    return InvalidHostError(
        value,
        "empty_label",
        "the name has an empty label (two dots in a row, or only a dot)",
        "Remove the extra dot",
    )


def _idna_error(value: str, error: UnicodeError) -> InvalidHostError:
    return InvalidHostError(
        value,
        "invalid_idna",
        f"not a valid internationalised name under IDNA 2008 ({error})",
        "Check the spelling of the name",
    )
