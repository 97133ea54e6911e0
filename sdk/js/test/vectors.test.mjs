// Host normalisation against the vectors shared with the Python SDK.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, mock, test } from "node:test";

import { InvalidHostError, normalizeHost, PORT_IGNORED_WARNING_CODE } from "../src/index.js";

const VECTORS_URL = new URL("../../../tests/vectors/host_normalization.json", import.meta.url);
const vectors = JSON.parse(readFileSync(VECTORS_URL, "utf8"));

/** Run normalizeHost and return its verdict in the vectors' shape. */
function verdict(input) {
  const emitWarning = mock.method(process, "emitWarning", () => {});
  try {
    const result = { host: normalizeHost(input) };
    const codes = emitWarning.mock.calls.map((call) => call.arguments[1]?.code);
    if (codes.includes(PORT_IGNORED_WARNING_CODE)) {
      result.warning = "port_ignored";
    }
    return result;
  } catch (error) {
    assert.ok(error instanceof InvalidHostError, `${JSON.stringify(input)} threw ${error}`);
    assert.equal(error.host, input);
    return { error: error.reason };
  } finally {
    emitWarning.mock.restore();
  }
}

describe("host vectors", () => {
  test("vectors file is not empty", () => {
    assert.ok(vectors.length > 100);
  });

  for (const { input, ...expected } of vectors) {
    test(JSON.stringify(input), () => {
      assert.deepEqual(verdict(input), expected);
    });
  }
});

test("normalizeHost rejects non-string", () => {
  assert.throws(() => normalizeHost(["pypi.org"]), TypeError);
  assert.throws(() => normalizeHost(null), /host must be a string, not null/);
});

test("port warning code and type", async () => {
  const received = new Promise((resolve) => process.once("warning", resolve));
  assert.equal(normalizeHost("https://pypi.org:8443/x"), "pypi.org");
  const warning = await received;
  assert.equal(warning.name, "PortIgnoredWarning");
  assert.equal(warning.code, "RUNTA_PORT_IGNORED");
  assert.match(warning.message, /port 8443 of "https:\/\/pypi.org:8443\/x" was dropped/);
});

test("invalid host message names value and fix", () => {
  assert.throws(
    () => normalizeHost("https://pypi.org@evil.test/"),
    (error) => {
      assert.equal(error.code, "invalid_host");
      assert.equal(error.status, null);
      assert.equal(error.field, null);
      assert.match(error.message, /^invalid host "https:\/\/pypi.org@evil.test\/": user info/);
      assert.match(error.message, /The host of this URL is "evil.test"/);
      return true;
    },
  );
});

test("invalid idna message names rule", () => {
  assert.throws(() => normalizeHost("💩.la"), /IDNA 2008 \(Codepoint U\+1F4A9 not allowed at position 1/);
});
