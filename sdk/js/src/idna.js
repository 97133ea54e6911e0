// IDNA 2008 label checks and the UTS 46 mapping, as the Python idna package applies them.
//
// The Python SDK converts names with idna.uts46_remap, idna.check_label and
// idna.ulabel. This module repeats those steps on tables generated from the same package
// and the same Python (see idna-tables.js), so both SDKs accept and reject the same
// names. Node's url.domainToASCII is no substitute: it follows the WHATWG URL standard
// and accepts names that IDNA 2008 rejects, such as emoji.

import {
  BIDI_RUNS,
  CODEPOINT_CLASSES,
  JOINING_TYPES,
  LOWERCASE,
  MARKS,
  SCRIPTS,
  UTS46_ROWS,
  VIRAMA,
} from "./idna-tables.js";
import { decodePunycode, encodePunycode, PunycodeError } from "./punycode.js";

// Limits of the idna package: input it rejects before any other check, and the label
// length it accepts (a domain's 253 octets plus a trailing dot).
const MAX_INPUT_LENGTH = 1024;
const MAX_LABEL_CODE_POINTS = 254;
const HYPHEN = 0x2d;
const ZWNJ = 0x200c;
const ZWJ = 0x200d;

/** A name that IDNA 2008 or the UTS 46 mapping rejects. The message names the failed rule. */
export class IdnaError extends Error {
  constructor(message) {
    super(message);
    this.name = "IdnaError";
  }
}

// Table decoding runs once, on the first non-ASCII name.

let tables = null;

function parseBase36List(text) {
  return text === "" ? [] : text.split(",").map((digits) => parseInt(digits, 36));
}

/** Return a sorted Uint32Array of [start, end) pairs from gap/length numbers. */
function parseRanges(text) {
  const numbers = parseBase36List(text);
  const ranges = new Uint32Array(numbers.length);
  let position = 0;
  for (let index = 0; index < numbers.length; index += 2) {
    position += numbers[index];
    ranges[index] = position;
    position += numbers[index + 1];
    ranges[index + 1] = position;
  }
  return ranges;
}

function isInRanges(ranges, codePoint) {
  let low = 0;
  let high = ranges.length / 2 - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (codePoint < ranges[2 * middle]) {
      high = middle - 1;
    } else if (codePoint >= ranges[2 * middle + 1]) {
      low = middle + 1;
    } else {
      return true;
    }
  }
  return false;
}

/** Return the index of the last entry of the sorted `starts` that is <= codePoint. */
function findRow(starts, codePoint) {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (starts[middle] <= codePoint) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

function parseUts46Rows(text) {
  const starts = [];
  const statuses = [];
  const replacements = [];
  let start = 0;
  let index = 0;
  while (index < text.length) {
    let digitsEnd = index;
    while (/[0-9a-z]/.test(text[digitsEnd])) {
      digitsEnd += 1;
    }
    start += parseInt(text.slice(index, digitsEnd), 36);
    const status = text[digitsEnd];
    index = digitsEnd + 1;
    let replacement = null;
    if (status === "M") {
      const length = parseInt(text[index], 36);
      replacement = text.slice(index + 1, index + 1 + length);
      index += 1 + length;
    }
    starts.push(start);
    statuses.push(status);
    replacements.push(replacement);
  }
  return { starts: Uint32Array.from(starts), statuses: statuses.join(""), replacements };
}

function parseBidiRuns(text) {
  const starts = [];
  let letters = "";
  let start = 0;
  for (const [, digits, letter] of text.matchAll(/([0-9a-z]+)([A-Z])/g)) {
    starts.push(start);
    letters += letter;
    start += parseInt(digits, 36);
  }
  return { starts: Uint32Array.from(starts), letters };
}

function parseLowercase(text) {
  const mapping = new Map();
  for (const pair of text.split(",")) {
    const [source, target] = pair.split(":");
    const codePoints = target.split("+").map((digits) => parseInt(digits, 36));
    mapping.set(parseInt(source, 36), String.fromCodePoint(...codePoints));
  }
  return mapping;
}

function loadTables() {
  if (tables === null) {
    const parseAll = (byName) =>
      Object.fromEntries(Object.entries(byName).map(([name, text]) => [name, parseRanges(text)]));
    tables = {
      uts46: parseUts46Rows(UTS46_ROWS),
      classes: parseAll(CODEPOINT_CLASSES),
      joiningTypes: parseAll(JOINING_TYPES),
      scripts: parseAll(SCRIPTS),
      marks: parseRanges(MARKS),
      virama: parseRanges(VIRAMA),
      bidi: parseBidiRuns(BIDI_RUNS),
      lowercase: parseLowercase(LOWERCASE),
    };
  }
  return tables;
}

function formatCodePoint(codePoint) {
  return "U+" + codePoint.toString(16).toUpperCase().padStart(4, "0");
}

function labelText(codePoints) {
  return JSON.stringify(String.fromCodePoint(...codePoints));
}

// UTS 46 mapping

/**
 * Map a domain with the UTS 46 table, non-transitional and without the STD3 rules, then
 * normalise it to NFC, as idna.uts46_remap(domain, std3_rules=False) does.
 * @param {string} domain
 * @returns {string}
 */
export function uts46Remap(domain) {
  const codePoints = Array.from(domain, (character) => character.codePointAt(0));
  if (codePoints.length > MAX_INPUT_LENGTH) {
    throw new IdnaError("Domain too long");
  }

  const { starts, statuses, replacements } = loadTables().uts46;
  let output = "";
  codePoints.forEach((codePoint, position) => {
    const row = codePoint < 256 ? codePoint : findRow(starts, codePoint);
    const status = statuses[row];
    if (status === "V" || status === "D") {
      output += String.fromCodePoint(codePoint);
    } else if (status === "M") {
      output += replacements[row];
    } else if (status !== "I") {
      throw new IdnaError(
        `Codepoint ${formatCodePoint(codePoint)} not allowed at position ${position + 1} ` +
          `in ${JSON.stringify(domain)}`,
      );
    }
  });
  return output.normalize("NFC");
}

/**
 * Lower-case a domain that went through uts46Remap, as Python's str.lower() does.
 *
 * The mapping leaves only lower-case letters, except a few valid capitals (Cherokee)
 * that Python still lowers, so the table lists exactly those.
 * @param {string} domain
 * @returns {string}
 */
export function lowerMapped(domain) {
  const { lowercase } = loadTables();
  let output = "";
  for (const character of domain) {
    const codePoint = character.codePointAt(0);
    if (codePoint < 0x80) {
      output += character.toLowerCase();
    } else {
      output += lowercase.get(codePoint) ?? character;
    }
  }
  return output;
}

// IDNA 2008 label validity (RFC 5891 section 4.2, RFC 5892, RFC 5893)

function joiningType(codePoint) {
  const { joiningTypes } = loadTables();
  for (const [type, ranges] of Object.entries(joiningTypes)) {
    if (isInRanges(ranges, codePoint)) {
      return type;
    }
  }
  return null;
}

function isScript(codePoint, script) {
  return isInRanges(loadTables().scripts[script], codePoint);
}

function isVirama(codePoint) {
  return isInRanges(loadTables().virama, codePoint);
}

/** Apply RFC 5892 appendix A.1 and A.2 to the joiner at `position`. */
function isValidContextJ(label, position) {
  const codePoint = label[position];
  if (codePoint === ZWJ) {
    return position > 0 && isVirama(label[position - 1]);
  }
  if (codePoint !== ZWNJ) {
    return false;
  }
  if (position > 0 && isVirama(label[position - 1])) {
    return true;
  }

  // A non-joiner between a left- or dual-joining and a right- or dual-joining letter,
  // skipping transparent characters on either side.
  let before = null;
  for (let index = position - 1; index >= 0; index -= 1) {
    before = joiningType(label[index]);
    if (before !== "T") {
      break;
    }
  }
  if (before !== "L" && before !== "D") {
    return false;
  }
  let after = null;
  for (let index = position + 1; index < label.length; index += 1) {
    after = joiningType(label[index]);
    if (after !== "T") {
      break;
    }
  }
  return after === "R" || after === "D";
}

/** Apply the RFC 5892 appendix A rules for CONTEXTO code points at `position`. */
function isValidContextO(label, position) {
  const codePoint = label[position];
  const last = label.length - 1;

  if (codePoint === 0x00b7) {
    // MIDDLE DOT, only between two "l" (Catalan "l·l").
    return position > 0 && position < last && label[position - 1] === 0x6c && label[position + 1] === 0x6c;
  }
  if (codePoint === 0x0375) {
    // GREEK LOWER NUMERAL SIGN, only before a Greek character.
    return position < last && isScript(label[position + 1], "Greek");
  }
  if (codePoint === 0x05f3 || codePoint === 0x05f4) {
    // HEBREW PUNCTUATION GERESH and GERSHAYIM, only after a Hebrew character.
    return position > 0 && isScript(label[position - 1], "Hebrew");
  }
  if (codePoint === 0x30fb) {
    // KATAKANA MIDDLE DOT, only in a label with Hiragana, Katakana or Han.
    return label.some(
      (other) =>
        other !== 0x30fb &&
        (isScript(other, "Hiragana") || isScript(other, "Katakana") || isScript(other, "Han")),
    );
  }
  if (codePoint >= 0x0660 && codePoint <= 0x0669) {
    // ARABIC-INDIC digits, never mixed with EXTENDED ARABIC-INDIC digits.
    return !label.some((other) => other >= 0x06f0 && other <= 0x06f9);
  }
  if (codePoint >= 0x06f0 && codePoint <= 0x06f9) {
    return !label.some((other) => other >= 0x0660 && other <= 0x0669);
  }
  return false;
}

function bidiClass(codePoint) {
  const { starts, letters } = loadTables().bidi;
  return letters[findRow(starts, codePoint)];
}

const RTL_ALLOWED = new Set("RANESCTOBM");
const RTL_VALID_ENDING = new Set("RAEN");
const LTR_ALLOWED = new Set("LESCTOBM");
const LTR_VALID_ENDING = new Set("LE");

/** Apply the RFC 5893 Bidi Rule to a label that contains a right-to-left character. */
function checkBidi(label) {
  // Classes are letters: L, R, A (AL), N (AN), E (EN), S (ES), C (CS), T (ET), O (ON),
  // B (BN), M (NSM), X (any other) and U (unassigned in the tables' Unicode version).
  const classes = label.map(bidiClass);
  const unknown = classes.indexOf("U");
  if (unknown !== -1) {
    throw new IdnaError(`Unknown directionality in label ${labelText(label)} at position ${unknown + 1}`);
  }
  if (!classes.some((letter) => letter === "R" || letter === "A" || letter === "N")) {
    return;
  }

  let rtl;
  if (classes[0] === "R" || classes[0] === "A") {
    rtl = true;
  } else if (classes[0] === "L") {
    rtl = false;
  } else {
    throw new IdnaError(`First codepoint in label ${labelText(label)} must be directionality L, R or AL`);
  }

  let validEnding = false;
  let numberType = null;
  classes.forEach((letter, index) => {
    const allowed = rtl ? RTL_ALLOWED : LTR_ALLOWED;
    if (!allowed.has(letter)) {
      const direction = rtl ? "right-to-left" : "left-to-right";
      throw new IdnaError(`Invalid direction for codepoint at position ${index + 1} in a ${direction} label`);
    }
    if ((rtl ? RTL_VALID_ENDING : LTR_VALID_ENDING).has(letter)) {
      validEnding = true;
    } else if (letter !== "M") {
      validEnding = false;
    }
    if (rtl && (letter === "N" || letter === "E")) {
      if (numberType === null) {
        numberType = letter;
      } else if (numberType !== letter) {
        throw new IdnaError("Can not mix numeral types in a right-to-left label");
      }
    }
  });
  if (!validEnding) {
    throw new IdnaError("Label ends with illegal codepoint directionality");
  }
}

/**
 * Check one U-label against IDNA 2008, as idna.check_label does: NFC, hyphens, no leading
 * combining mark, PVALID or valid CONTEXTJ/CONTEXTO code points, and the Bidi Rule.
 *
 * Takes code points rather than a string, because a decoded A-label may hold surrogate
 * code points that a JS string would pair into one character.
 * @param {number[]} label
 */
export function checkLabel(label) {
  if (label.length === 0) {
    throw new IdnaError("Empty Label");
  }
  if (label.length > MAX_INPUT_LENGTH || label.length > MAX_LABEL_CODE_POINTS) {
    throw new IdnaError("Label too long");
  }
  const text = String.fromCodePoint(...label);
  if (text.normalize("NFC") !== text) {
    throw new IdnaError("Label must be in Normalization Form C");
  }
  if (label[2] === HYPHEN && label[3] === HYPHEN) {
    throw new IdnaError("Label has disallowed hyphens in 3rd and 4th position");
  }
  if (label[0] === HYPHEN || label[label.length - 1] === HYPHEN) {
    throw new IdnaError("Label must not start or end with a hyphen");
  }
  const { classes, marks } = loadTables();
  if (isInRanges(marks, label[0])) {
    throw new IdnaError("Label begins with an illegal combining character");
  }

  label.forEach((codePoint, position) => {
    if (isInRanges(classes.PVALID, codePoint)) {
      return;
    }
    let valid = false;
    let kind = "Codepoint";
    if (isInRanges(classes.CONTEXTJ, codePoint)) {
      valid = isValidContextJ(label, position);
      kind = "Joiner";
    } else if (isInRanges(classes.CONTEXTO, codePoint)) {
      valid = isValidContextO(label, position);
    }
    if (!valid) {
      throw new IdnaError(
        `${kind} ${formatCodePoint(codePoint)} not allowed at position ${position + 1} in ${labelText(label)}`,
      );
    }
  });

  checkBidi(label);
}

/**
 * Encode a non-ASCII label as an A-label after checking it, like idna.check_label
 * followed by the punycode codec. The length is left to the caller.
 * @param {string} label
 * @returns {string}
 */
export function toALabel(label) {
  const codePoints = Array.from(label, (character) => character.codePointAt(0));
  checkLabel(codePoints);
  return "xn--" + encodePunycode(codePoints);
}

/**
 * Check an ASCII label that starts with "xn--", as idna.ulabel does: it must decode, be
 * the canonical encoding of what it decodes to (RFC 5891 section 5.3), and that U-label
 * must pass checkLabel.
 * @param {string} label
 */
export function checkALabel(label) {
  if (label.length > MAX_INPUT_LENGTH) {
    throw new IdnaError("Label too long");
  }
  const encoded = label.toLowerCase().slice("xn--".length);
  if (encoded === "") {
    throw new IdnaError("Malformed A-label, no Punycode eligible content found");
  }
  if (encoded.endsWith("-")) {
    throw new IdnaError("A-label must not end with a hyphen");
  }

  let decoded;
  try {
    decoded = decodePunycode(encoded);
  } catch (error) {
    if (error instanceof PunycodeError) {
      throw new IdnaError(`Invalid A-label (${error.message})`);
    }
    throw error;
  }
  if (encodePunycode(decoded) !== encoded) {
    throw new IdnaError("A-label is not the canonical Punycode encoding of its U-label");
  }
  checkLabel(decoded);
}
