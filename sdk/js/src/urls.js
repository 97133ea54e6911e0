// Normalisation of URLs and host names into allowlist entries.
//
// normalizeHost takes what a user has at hand (`https://PyPI.org/simple`, `pypi.org:443`,
// `Bücher.example`) and returns the bare canonical host that runtad stores: lower case, no
// trailing dot, internationalised labels as A-labels (IDNA 2008 with the UTS 46 mapping,
// non-transitional). A `*.` wildcard is kept. runtad applies the same name rules to the
// result and also rejects a wildcard on a public suffix, which this module leaves to it.
//
// The Python SDK (runta/urls.py) implements the same steps, and both must agree on every
// case in tests/vectors/host_normalization.json. The steps, in order, with the `reason`
// of the first one that fails:
//
// 1. "" is `empty`. Any whitespace (as Python's str.isspace() defines it) is
//    `has_whitespace`, because input is never trimmed.
// 2. A scheme (`[A-Za-z][A-Za-z0-9+.-]*://`) or a leading `//` is removed. The authority
//    ends at the first `/`, `?` or `#`, and the rest of the URL is dropped.
// 3. Any `@` in the authority is `has_userinfo`. Otherwise, a host part that starts with
//    `[` or contains more than one `:` is `ip_literal`. Otherwise, the host and the port
//    are split at the `:`.
// 4. The host is checked as a name (step 6). If that check finds a dotted-quad IPv4
//    address, the result is `ip_literal` at this point.
// 5. A `%` in host or port is `percent_encoded`. A port that is not 1 to 5 digits up to
//    65535 is `bad_port`.
// 6. The name: empty host is `empty`. Non-ASCII input goes through the UTS 46 mapping
//    (`invalid_idna`), then the name is lower-cased. `.` is `empty_label`. One trailing
//    dot is removed. A leading dot is `leading_dot`, an empty label `empty_label`. A lone
//    `*` is `bare_wildcard`, and a `*` anywhere but as the whole first label is
//    `misplaced_wildcard`. A dotted quad of decimal octets is `ip_literal`. Then, label by
//    label from the left: non-ASCII labels become A-labels and `xn--` labels must decode
//    (`invalid_idna`). Only `a-z`, `0-9` and `-` may remain (`bad_character`), a label may
//    not begin or end with `-` (`bad_hyphen`), and its A-label has at most 63 octets
//    (`label_too_long`). The whole name has at most 253 octets (`name_too_long`). A last
//    label of digits only, or `0x` and hex digits, is `numeric_tld`, because URL parsers
//    read such a name as an IPv4 address.
// 7. When a port was dropped, a warning with code RUNTA_PORT_IGNORED is emitted.

import { InvalidHostError } from "./errors.js";
import { checkALabel, IdnaError, lowerMapped, toALabel, uts46Remap } from "./idna.js";

export const MAX_LABEL_LENGTH = 63;
export const MAX_NAME_LENGTH = 253;
export const PORT_IGNORED_WARNING_CODE = "RUNTA_PORT_IGNORED";

const SCHEME = /^(?:[A-Za-z][A-Za-z0-9+.-]*:\/\/|\/\/)/;
const PORT = /^[0-9]{1,5}$/;
const LDH_CHARACTER = /^[a-z0-9-]$/;
const OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const DOTTED_QUAD = new RegExp(`^(?:${OCTET}\\.){3}${OCTET}$`);
const NUMERIC_LABEL = /^(?:[0-9]+|0x[0-9a-f]*)$/;
const ASCII = /^[\x00-\x7f]*$/;
// The characters of Python 3.11's str.isspace(), which the Python SDK uses. JS's \s
// differs: it has U+FEFF but lacks U+001C to U+001F and U+0085.
const WHITESPACE = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

function quote(value) {
  return JSON.stringify(value);
}

function invalidHost(value, reason, problem, fix) {
  return new InvalidHostError(`invalid host ${quote(value)}: ${problem}. ${fix}.`, { host: value, reason });
}

/**
 * Return the bare canonical host of a URL or host name, for the egress allowlist.
 *
 * Drops scheme, path, query and fragment, and drops a port with a warning (code
 * RUNTA_PORT_IGNORED). Throws InvalidHostError for user info, IP literals and anything
 * that is not a valid host name or `*.` wildcard.
 * @param {string} value
 * @returns {string}
 */
export function normalizeHost(value) {
  if (typeof value !== "string") {
    throw new TypeError(`host must be a string, not ${value === null ? "null" : typeof value}`);
  }
  if (value === "") {
    throw invalidHost(value, "empty", "the host name is empty", "Give a host name such as 'pypi.org'");
  }
  if (WHITESPACE.test(value)) {
    throw invalidHost(value, "has_whitespace", "the value contains whitespace", "Remove the whitespace");
  }

  const url = splitUrl(value);
  let host = null;
  let hostError = null;
  try {
    host = canonicalName(value, url.host);
  } catch (error) {
    if (!(error instanceof InvalidHostError)) {
      throw error;
    }
    hostError = error;
  }

  if (url.userinfo !== null) {
    throw userinfoError(value, host);
  }
  if (hostError?.reason === "ip_literal") {
    throw hostError;
  }
  if (url.host.includes("%") || url.port?.includes("%")) {
    throw invalidHost(
      value,
      "percent_encoded",
      "percent-encoding is not allowed in a host name",
      "Write the host name without '%' escapes",
    );
  }
  if (url.port !== null && !isPort(url.port)) {
    throw invalidHost(
      value,
      "bad_port",
      `${quote(url.port)} after ':' is not a port number`,
      "Give a port from 0 to 65535, or no port",
    );
  }
  if (hostError !== null) {
    throw hostError;
  }

  if (url.port !== null) {
    process.emitWarning(
      `port ${url.port} of ${quote(value)} was dropped: ports are not part of the egress policy, ` +
        `so ${quote(host)} allows every port`,
      { type: "PortIgnoredWarning", code: PORT_IGNORED_WARNING_CODE },
    );
  }
  return host;
}

function userinfoError(value, host) {
  const fix =
    host === null
      ? "Give the bare host name"
      : `The host of this URL is ${quote(host)}. Give that if it is the host you mean`;
  const problem = "user info before '@' is not allowed, because it hides the real host";
  return invalidHost(value, "has_userinfo", problem, fix);
}

/** Cut `value` into user info, host and port without validating them. Absent parts are null. */
function splitUrl(value) {
  const scheme = SCHEME.exec(value);
  const rest = scheme ? value.slice(scheme[0].length) : value;

  let end = rest.length;
  for (const delimiter of "/?#") {
    const position = rest.indexOf(delimiter);
    if (position !== -1) {
      end = Math.min(end, position);
    }
  }
  const authority = rest.slice(0, end);

  // User info ends at the last '@', as WHATWG URL parsers read it.
  const atSign = authority.lastIndexOf("@");
  const userinfo = atSign === -1 ? null : authority.slice(0, atSign);
  let host = authority.slice(atSign + 1);
  let port = null;
  if (!isIpv6Like(host)) {
    const colon = host.indexOf(":");
    if (colon !== -1) {
      port = host.slice(colon + 1);
      host = host.slice(0, colon);
    }
  }
  return { userinfo, host, port };
}

function isIpv6Like(host) {
  return host.startsWith("[") || host.split(":").length > 2;
}

function isPort(text) {
  return PORT.test(text) && Number(text) <= 65535;
}

/** Return the canonical name or wildcard for the bare `host` of `value`, or throw. */
function canonicalName(value, host) {
  if (isIpv6Like(host)) {
    throw ipLiteralError(value);
  }
  if (host === "") {
    throw invalidHost(value, "empty", "the host name is empty", "Give a host name such as 'pypi.org'");
  }
  if (ASCII.test(host)) {
    host = host.toLowerCase();
  } else {
    try {
      host = lowerMapped(uts46Remap(host));
    } catch (error) {
      throw idnaError(value, error);
    }
  }

  if (host === ".") {
    throw emptyLabelError(value);
  }
  if (host.endsWith(".")) {
    host = host.slice(0, -1);
  }
  if (host.startsWith(".")) {
    throw invalidHost(
      value,
      "leading_dot",
      "a leading dot is not allowed",
      "Use '*.' followed by the domain for the names below it, and add the domain itself to allow that name too",
    );
  }
  const labels = host.split(".");
  if (labels.includes("")) {
    throw emptyLabelError(value);
  }
  checkWildcard(value, labels);
  if (DOTTED_QUAD.test(host)) {
    throw ipLiteralError(value);
  }

  const start = labels[0] === "*" ? 1 : 0;
  for (let index = start; index < labels.length; index += 1) {
    labels[index] = canonicalLabel(value, labels[index]);
  }

  const name = labels.join(".");
  if (name.length > MAX_NAME_LENGTH) {
    throw invalidHost(
      value,
      "name_too_long",
      `the name is ${name.length} octets long`,
      `A host name has at most ${MAX_NAME_LENGTH} octets`,
    );
  }
  const last = labels[labels.length - 1];
  if (NUMERIC_LABEL.test(last)) {
    throw invalidHost(
      value,
      "numeric_tld",
      `the last label ${quote(last)} is numeric, so URL parsers read the name as an IPv4 address`,
      "The allowlist takes host names, not addresses",
    );
  }
  return name;
}

function checkWildcard(value, labels) {
  if (labels.length === 1 && labels[0] === "*") {
    throw invalidHost(
      value,
      "bare_wildcard",
      "a lone '*' would match every host",
      "List the hosts, or disable enforcement to allow all traffic",
    );
  }
  labels.forEach((label, index) => {
    if (label.includes("*") && (index > 0 || label !== "*")) {
      throw invalidHost(
        value,
        "misplaced_wildcard",
        "'*' is allowed only as the whole first label, as in '*.example.com'",
        "Move the '*' to the front or list the hosts",
      );
    }
  });
}

/** Return one label as a checked A-label or letters-digits-hyphens label, or throw. */
function canonicalLabel(value, label) {
  try {
    if (!ASCII.test(label)) {
      // The length check below reports a long A-label as too long, as the Python SDK does.
      label = toALabel(label);
    } else if (label.startsWith("xn--")) {
      checkALabel(label);
    }
  } catch (error) {
    throw idnaError(value, error);
  }

  for (const character of label) {
    if (!LDH_CHARACTER.test(character)) {
      throw invalidHost(
        value,
        "bad_character",
        `${quote(character)} is not allowed in a host name`,
        "Host names contain only letters, digits, hyphens and dots",
      );
    }
  }
  if (label.startsWith("-") || label.endsWith("-")) {
    throw invalidHost(
      value,
      "bad_hyphen",
      `the label ${quote(label)} starts or ends with '-'`,
      "A label must begin and end with a letter or digit",
    );
  }
  if (label.length > MAX_LABEL_LENGTH) {
    throw invalidHost(
      value,
      "label_too_long",
      `the label ${quote(label)} is ${label.length} octets long`,
      `A label has at most ${MAX_LABEL_LENGTH} octets`,
    );
  }
  return label;
}

function ipLiteralError(value) {
  return invalidHost(
    value,
    "ip_literal",
    "the allowlist takes host names, not addresses",
    "Give the host name that the sandbox connects to",
  );
}

function emptyLabelError(value) {
  return invalidHost(
    value,
    "empty_label",
    "the name has an empty label (two dots in a row, or only a dot)",
    "Remove the extra dot",
  );
}

function idnaError(value, error) {
  if (!(error instanceof IdnaError)) {
    throw error;
  }
  return invalidHost(
    value,
    "invalid_idna",
    `not a valid internationalised name under IDNA 2008 (${error.message})`,
    "Check the spelling of the name",
  );
}
