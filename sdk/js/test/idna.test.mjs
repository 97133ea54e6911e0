// IDNA 2008 and UTS 46 corner cases, with the verdicts of the Python SDK pinned here.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { InvalidHostError, normalizeHost } from "../src/index.js";
import { decodePunycode, encodePunycode, PunycodeError } from "../src/punycode.js";

function verdict(input) {
  try {
    return normalizeHost(input);
  } catch (error) {
    assert.ok(error instanceof InvalidHostError, String(error));
    return `!${error.reason}`;
  }
}

// Input, then the host or "!" and the reason, as runta/urls.py returns them.
const CASES = [
  ["ẞ.de", "xn--zca.de"], // capital sharp s maps to ß, which non-transitional keeps
  ["ς.gr", "xn--3xa.gr"], // final sigma is kept, not mapped to σ
  ["Σ.gr", "xn--4xa.gr"],
  ["İ.example", "xn--i-9bb.example"],
  ["Ꭰ.example", "!invalid_idna"], // Python lowers Cherokee capitals after UTS 46
  ["ꭰ.example", "!invalid_idna"],
  ["l·l.cat", "xn--ll-0ea.cat"], // MIDDLE DOT between two "l"
  ["a·l.cat", "!invalid_idna"],
  ["\u0375\u03b1.gr", "xn--wva4j.gr"], // GREEK LOWER NUMERAL SIGN before Greek
  ["\u0375a.gr", "!invalid_idna"],
  ["\u05d0\u05f3.il", "xn--4db4e.il"], // GERESH after Hebrew
  ["a\u05f3.il", "!invalid_idna"],
  ["\u30fb\u30a2.jp", "xn--cckyj.jp"], // KATAKANA MIDDLE DOT with Katakana
  ["\u30fba.jp", "!invalid_idna"],
  ["\u0628\u200c\u0644.example", "xn--ngb0d921i.example"], // ZWNJ between joining letters
  ["a\u200cb.example", "!invalid_idna"],
  ["\u0915\u094d\u200d.in", "xn--11b6iy14e.in"], // ZWJ after a virama
  ["a\u200db.in", "!invalid_idna"],
  ["\u0660\u0661.example", "!invalid_idna"], // Arabic-Indic digits cannot start a label
  ["\u0660\u06f0.example", "!invalid_idna"], // nor mix with extended ones
  ["\u05d0\u05d1.il", "xn--4dbc.il"],
  ["\u05d0a.il", "!invalid_idna"], // Bidi Rule 2
  ["\u05d01.il", "xn--1-zhc.il"],
  ["1\u05d0.il", "!invalid_idna"], // Bidi Rule 1
  ["\u0301a.example", "!invalid_idna"], // leading combining mark
  ["ü-.example", "!invalid_idna"], // hyphens in a U-label are IDNA errors
  ["-ü.example", "!invalid_idna"],
  ["ab--ü.example", "!invalid_idna"],
  ["xn--Bcher-kva.example", "xn--bcher-kva.example"],
  ["xn---bcher-kva.example", "!invalid_idna"], // not the canonical encoding
  ["xn--.example", "!invalid_idna"],
  ["xn--a-.example", "!invalid_idna"],
  ["xn--ls8h.la", "!invalid_idna"], // the emoji label, spelled as an A-label
  ["xn--a.example", "!invalid_idna"], // decodes to U+0080
  ["\u2488.example", "!invalid_idna"], // its mapping would contain a dot
  ["\u00ad.example", "!leading_dot"], // soft hyphen is ignored
  ["a\u00adb.example", "ab.example"],
  ["\u3164.example", "!leading_dot"],
  ["ab\u200bc.example", "abc.example"],
];

describe("idna corner cases", () => {
  for (const [input, expected] of CASES) {
    test(JSON.stringify(input), () => {
      assert.equal(verdict(input), expected);
    });
  }
});

test("non-ascii label length counts A-label", () => {
  // 61 code points, but the A-label "xn--aaa…a-egg" has 68 octets.
  assert.equal(verdict(`ü${"a".repeat(60)}.example`), "!label_too_long");
});

test("non-ascii label over 254 code points is invalid_idna", () => {
  assert.equal(verdict(`${"ü".repeat(255)}.example`), "!invalid_idna");
});

test("punycode encodes RFC 3492 sample", () => {
  // RFC 3492 section 7.1, sample (A), Egyptian Arabic.
  const text =
    "\u0644\u064A\u0647\u0645\u0627\u0628\u062A\u0643\u0644\u0645\u0648\u0634\u0639\u0631\u0628\u064A\u061F";
  const codePoints = Array.from(text, (character) => character.codePointAt(0));
  assert.equal(encodePunycode(codePoints), "egbpdaj6bu4bxfgehfvwxn");
  assert.deepEqual(decodePunycode("egbpdaj6bu4bxfgehfvwxn"), codePoints);
});

test("punycode keeps basic code points", () => {
  assert.equal(encodePunycode([0x62, 0xfc, 0x63, 0x68, 0x65, 0x72]), "bcher-kva");
  assert.deepEqual(decodePunycode("bcher-kva"), [0x62, 0xfc, 0x63, 0x68, 0x65, 0x72]);
});

test("punycode decodes digits case-insensitively", () => {
  assert.deepEqual(decodePunycode("bcher-KVA"), decodePunycode("bcher-kva"));
});

test("punycode rejects incomplete number", () => {
  assert.throws(() => decodePunycode("bcher-kv"), PunycodeError);
});

test("punycode rejects non-digit", () => {
  assert.throws(() => decodePunycode("bcher-k_a"), PunycodeError);
});

test("punycode rejects code point above U+10FFFF", () => {
  assert.throws(() => decodePunycode("99999a"), /invalid code point U\+48A3C1/);
});

test("punycode decodes surrogates as code points", () => {
  // An A-label may spell surrogate code points. JS strings would pair them into one
  // character, so the decoder returns code points.
  const surrogates = [0xd83d, 0xdca9];
  assert.deepEqual(decodePunycode(encodePunycode(surrogates)), surrogates);
});
