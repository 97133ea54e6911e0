// Punycode (RFC 3492) over arrays of code points.
//
// Node's own punycode module is deprecated, and the decoder here must accept exactly what
// Python's "punycode" codec accepts, because the Python SDK decodes "xn--" labels with it.
// The encoder is plain RFC 3492, so both sides produce the same A-label.

const BASE = 36;
const TMIN = 1;
const TMAX = 26;
const SKEW = 38;
const DAMP = 700;
const INITIAL_BIAS = 72;
const INITIAL_N = 0x80;
const MAX_CODE_POINT = 0x10ffff;
const DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789";

/** A Punycode string that does not decode. */
export class PunycodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "PunycodeError";
  }
}

function threshold(j, bias) {
  const value = BASE * (j + 1) - bias;
  return Math.min(Math.max(value, TMIN), TMAX);
}

function adapt(delta, first, numberOfPoints) {
  delta = first ? Math.floor(delta / DAMP) : Math.floor(delta / 2);
  delta += Math.floor(delta / numberOfPoints);
  let divisions = 0;
  // ((BASE - TMIN) * TMAX) / 2 == 455
  while (delta > 455) {
    delta = Math.floor(delta / (BASE - TMIN));
    divisions += BASE;
  }
  return divisions + Math.floor((BASE * delta) / (delta + SKEW));
}

/**
 * Encode code points as Punycode, without the "xn--" prefix.
 * @param {number[]} codePoints
 * @returns {string}
 */
export function encodePunycode(codePoints) {
  const basic = codePoints.filter((codePoint) => codePoint < 0x80);
  let output = String.fromCharCode(...basic);
  if (basic.length > 0) {
    output += "-";
  }

  let n = INITIAL_N;
  let delta = 0;
  let bias = INITIAL_BIAS;
  let handled = basic.length;
  while (handled < codePoints.length) {
    let next = MAX_CODE_POINT + 1;
    for (const codePoint of codePoints) {
      if (codePoint >= n && codePoint < next) {
        next = codePoint;
      }
    }
    delta += (next - n) * (handled + 1);
    n = next;

    for (const codePoint of codePoints) {
      if (codePoint < n) {
        delta += 1;
      }
      if (codePoint !== n) {
        continue;
      }
      let q = delta;
      for (let j = 0; ; j += 1) {
        const t = threshold(j, bias);
        if (q < t) {
          break;
        }
        output += DIGITS[t + ((q - t) % (BASE - t))];
        q = Math.floor((q - t) / (BASE - t));
      }
      output += DIGITS[q];
      bias = adapt(delta, handled === basic.length, handled + 1);
      delta = 0;
      handled += 1;
    }
    delta += 1;
    n += 1;
  }
  return output;
}

function digitValue(character) {
  const code = character.charCodeAt(0);
  if (code >= 0x41 && code <= 0x5a) {
    return code - 0x41;
  }
  if (code >= 0x30 && code <= 0x39) {
    return code - 22;
  }
  return -1;
}

/**
 * Decode an ASCII Punycode string (without "xn--") into code points.
 *
 * Follows CPython's codec with errors="strict": the basic part before the last "-" is
 * taken as it is, digits are case-insensitive, and the decoded text may contain
 * surrogates. Throws PunycodeError where that codec raises.
 * @param {string} text
 * @returns {number[]}
 */
export function decodePunycode(text) {
  const hyphen = text.lastIndexOf("-");
  const output = hyphen === -1 ? [] : Array.from(text.slice(0, hyphen), (c) => c.charCodeAt(0));
  const extended = (hyphen === -1 ? text : text.slice(hyphen + 1)).toUpperCase();

  let n = INITIAL_N;
  let position = -1;
  let bias = INITIAL_BIAS;
  let index = 0;
  while (index < extended.length) {
    const start = index;
    let delta = 0;
    let weight = 1;
    for (let j = 0; ; j += 1) {
      if (index >= extended.length) {
        throw new PunycodeError("incomplete Punycode string");
      }
      const digit = digitValue(extended[index]);
      index += 1;
      if (digit < 0) {
        throw new PunycodeError(`invalid Punycode digit ${JSON.stringify(extended[index - 1])}`);
      }
      const t = threshold(j, bias);
      delta += digit * weight;
      if (!Number.isSafeInteger(delta)) {
        // Python's integers grow without bound, but a delta this large always yields a
        // code point above U+10FFFF below, which it rejects too.
        throw new PunycodeError("Punycode delta out of range");
      }
      if (digit < t) {
        break;
      }
      weight *= BASE - t;
    }

    position += delta + 1;
    n += Math.floor(position / (output.length + 1));
    if (n > MAX_CODE_POINT) {
      throw new PunycodeError(`invalid code point U+${n.toString(16).toUpperCase()}`);
    }
    position %= output.length + 1;
    output.splice(position, 0, n);
    bias = adapt(delta, start === 0, output.length);
  }
  return output;
}
