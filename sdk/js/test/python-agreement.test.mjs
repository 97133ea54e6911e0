// Agreement with the Python SDK beyond the shared vectors: the same inputs go through
// normalizeHost here and runta.urls.normalize_host in the repository's Python, and the
// verdicts must match. Skipped when that Python cannot import runta.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, mock, test } from "node:test";

import { InvalidHostError, normalizeHost, PORT_IGNORED_WARNING_CODE } from "../src/index.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PYTHON =
  process.env.RUNTA_PYTHON ?? fileURLToPath(new URL("../../../.venv/bin/python", import.meta.url));
const NORMALIZE_SCRIPT = fileURLToPath(new URL("./support/normalize_with_python.py", import.meta.url));
const GENERATOR = fileURLToPath(new URL("../scripts/generate_idna_tables.py", import.meta.url));
const SAMPLE_SIZE = 20_000;
const MAX_CODE_POINT = 0x10ffff;

function pythonSkipReason() {
  if (!existsSync(PYTHON)) {
    return `no Python at ${PYTHON}: set RUNTA_PYTHON to the interpreter of the Python SDK`;
  }
  const probe = spawnSync(PYTHON, ["-c", "import idna, runta.urls"], { cwd: REPO_ROOT });
  if (probe.status !== 0) {
    return `${PYTHON} cannot import runta.urls: ${probe.stderr.toString().trim()}`;
  }
  return false;
}

const skip = pythonSkipReason();

function pythonVerdicts(inputs) {
  const result = spawnSync(PYTHON, [NORMALIZE_SCRIPT], {
    cwd: REPO_ROOT,
    input: JSON.stringify(inputs),
    maxBuffer: 256 * 1024 * 1024,
    timeout: 120_000,
  });
  assert.equal(result.status, 0, result.stderr.toString());
  return JSON.parse(result.stdout.toString());
}

function jsVerdict(input) {
  const emitWarning = mock.method(process, "emitWarning", () => {});
  try {
    const result = { host: normalizeHost(input) };
    if (emitWarning.mock.calls.some((call) => call.arguments[1]?.code === PORT_IGNORED_WARNING_CODE)) {
      result.warning = "port_ignored";
    }
    return result;
  } catch (error) {
    if (!(error instanceof InvalidHostError)) {
      throw error;
    }
    return { error: error.reason };
  } finally {
    emitWarning.mock.restore();
  }
}

function assertAgreement(inputs) {
  const expected = pythonVerdicts(inputs);
  const mismatches = [];
  inputs.forEach((input, index) => {
    const actual = jsVerdict(input);
    if (JSON.stringify(actual) !== JSON.stringify(expected[index])) {
      mismatches.push({ input, js: actual, python: expected[index] });
    }
  });
  assert.deepEqual(mismatches.slice(0, 20), [], `${mismatches.length} of ${inputs.length} inputs disagree`);
}

/** Deterministic pseudo-random integers below `limit` (a linear congruential generator). */
function* randomIntegers(seed, limit) {
  let state = seed;
  for (;;) {
    state = (state * 1103515245 + 12345) % 2147483648;
    yield state % limit;
  }
}

function take(iterator, count) {
  const values = [];
  for (const value of iterator) {
    if (values.length === count) {
      break;
    }
    values.push(value);
  }
  return values;
}

// Characters that exercise the mapping, the contextual rules and the Bidi Rule.
const INTERESTING = [
  ..."al1-.*:@%/_",
  "\u00df",
  "\u03c2",
  "\u03a3",
  "\u1e9e",
  "\u13a0",
  "\uab70",
  "\u0130",
  "\uff21",
  "\u3002",
  "\uff0e",
  "\u00b7",
  "\u0375",
  "\u03b1",
  "\u05f3",
  "\u05d0",
  "\u30fb",
  "\u30a2",
  "\u4e00",
  "\u200c",
  "\u200d",
  "\u094d",
  "\u0915",
  "\u0628",
  "\u0644",
  "\u0627",
  "\u064b",
  "\u0660",
  "\u06f0",
  "\u0301",
  "\u00ad",
  "\u2488",
  "\u3164",
  "\u0591",
  "\u0640",
  "\u06dd",
  "\u0816",
  "\u{1f4a9}",
  "\u{20000}",
  "\u2474",
  "\u0345",
];

describe("agreement with python sdk", { skip }, () => {
  test("idna tables are current", () => {
    const result = spawnSync(PYTHON, [GENERATOR, "--check"], { cwd: REPO_ROOT });
    assert.equal(result.status, 0, result.stderr.toString());
  });

  test("sampled code points inside label", () => {
    const codePoints = take(randomIntegers(1, MAX_CODE_POINT - 0x7f), SAMPLE_SIZE).map(
      (offset) => offset + 0x80,
    );
    assertAgreement(codePoints.map((codePoint) => `a${String.fromCodePoint(codePoint)}b.example`));
  });

  test("sampled code points starting label", () => {
    const codePoints = take(randomIntegers(2, MAX_CODE_POINT - 0x7f), SAMPLE_SIZE).map(
      (offset) => offset + 0x80,
    );
    assertAgreement(codePoints.map((codePoint) => `${String.fromCodePoint(codePoint)}.example`));
  });

  test("random labels of interesting characters", () => {
    const numbers = randomIntegers(3, 1 << 30);
    const inputs = [];
    for (let index = 0; index < SAMPLE_SIZE; index += 1) {
      const length = 1 + (numbers.next().value % 6);
      const label = take(numbers, length)
        .map((number) => INTERESTING[number % INTERESTING.length])
        .join("");
      inputs.push(index % 2 === 0 ? `${label}.example` : `https://${label}:443/x`);
    }
    assertAgreement(inputs);
  });

  test("random a-labels", () => {
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-";
    const numbers = randomIntegers(4, 1 << 30);
    const inputs = [];
    for (let index = 0; index < SAMPLE_SIZE; index += 1) {
      const length = 1 + (numbers.next().value % 10);
      const text = take(numbers, length)
        .map((number) => alphabet[number % alphabet.length])
        .join("");
      inputs.push(`xn--${text}.example`);
    }
    assertAgreement(inputs);
  });
});
