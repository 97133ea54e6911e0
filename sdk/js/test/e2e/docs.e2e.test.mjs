// The JavaScript lines of the egress documentation, run verbatim against a real runtad,
// and the typed error of each API failure the SDK can provoke without side effects.
//
// tests/e2e/test_js_sdk.py runs this file with RUNTA_SOCKET set to the daemon's socket
// and RUNTA_TEST_RUNTIME to a runtime that it created with pypi.org allowed, enforcement
// on, and one denied lookup of RUNTA_TEST_DENIED_HOST, so that there is an event to list.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";

import {
  AlreadyExistsError,
  InvalidHostError,
  InvalidNameError,
  NetnsNotFoundError,
  NotFoundError,
  PublicSuffixWildcardError,
  Runta,
  VersionConflictError,
} from "../../src/index.js";

const runtimeName = process.env.RUNTA_TEST_RUNTIME;
const deniedHost = process.env.RUNTA_TEST_DENIED_HOST;
const skip =
  runtimeName && process.env.RUNTA_SOCKET
    ? false
    : "needs RUNTA_SOCKET and RUNTA_TEST_RUNTIME naming a runtad and one of its runtimes: run tests/e2e/test_js_sdk.py";
// The audit trail writes in batches, so a fresh event can take a moment to show.
const EVENT_WAIT_MS = 10_000;
const EVENT_POLL_MS = 200;

/** Return whether `error` is runtad's 404 for a route it does not serve. */
function isMissingRoute(error) {
  return error instanceof NotFoundError && /^no route for /.test(error.message);
}

async function waitForEvent(runtime, host) {
  const deadline = Date.now() + EVENT_WAIT_MS;
  for (;;) {
    const page = await runtime.egress.audit(100);
    if (page.items.some((event) => event.host === host)) {
      return true;
    }
    if (Date.now() > deadline) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, EVENT_POLL_MS));
  }
}

if (skip) {
  test("docs snippets against runtad", { skip }, () => {});
} else {
  const runta = new Runta();
  const runtime = await runta.runtimes.get(runtimeName);

  // The harness made the denied lookup just before this process started.
  let auditRouteMissing = null;
  let deniedEventSeen = false;
  try {
    deniedEventSeen = deniedHost === undefined || (await waitForEvent(runtime, deniedHost));
  } catch (error) {
    if (!isMissingRoute(error)) {
      throw error;
    }
    auditRouteMissing = error.message;
  }

  const printed = [];
  const states = {};
  const consoleLog = console.log;
  console.log = (...values) => printed.push(values);
  try {
    await runtime.egress.allow(["pypi.org", "*.pythonhosted.org", "api.openai.com"]);
    await runtime.egress.enable();
    states.enable = await runtime.egress.table();
    console.log(await runtime.egress.list());
    await runtime.egress.disable();
    states.disable = await runtime.egress.table();
    await runtime.egress.updatePolicy({ enabled: true, allowed_hosts: ["api.github.com"] });
    states.updatePolicy = await runtime.egress.table();
    if (auditRouteMissing === null) {
      // prettier-ignore
      for (const event of await runtime.egress.audit(20)) { console.log(event.action, event.host, event.path, event.reason); }
      states.auditLines = printed.length - 1;
      // prettier-ignore
      for (const audit of await runta.audits.list({ runtime, category: "egress", limit: 20 })) { console.log(audit.category, audit.payload); }
    }
  } finally {
    console.log = consoleLog;
  }

  describe("docs snippets against runtad", () => {
    test("allow then enable", () => {
      assert.equal(states.enable.enabled, true);
      assert.deepEqual(states.enable.allowed_hosts, ["pypi.org", "*.pythonhosted.org", "api.openai.com"]);
    });

    test("allowed hosts resolve in the lab", () => {
      const pypi = states.enable.entries.find((entry) => entry.host === "pypi.org");
      assert.equal(pypi.kind, "exact");
      assert.equal(pypi.status, "resolved");
      assert.ok(pypi.addresses.some((address) => address.address === "192.0.2.10"));
      const wildcard = states.enable.entries.find((entry) => entry.host === "*.pythonhosted.org");
      assert.equal(wildcard.kind, "wildcard");
    });

    test("list prints host array", () => {
      assert.deepEqual(printed[0], [["pypi.org", "*.pythonhosted.org", "api.openai.com"]]);
    });

    test("disable turns enforcement off", () => {
      assert.equal(states.disable.enabled, false);
      assert.deepEqual(states.disable.allowed_hosts, states.enable.allowed_hosts);
    });

    test("update policy replaces list", () => {
      assert.equal(states.updatePolicy.enabled, true);
      assert.deepEqual(states.updatePolicy.allowed_hosts, ["api.github.com"]);
      assert.ok(states.updatePolicy.version > states.disable.version);
    });

    const auditSkip =
      auditRouteMissing === null ? false : `runtad serves no audit routes yet: ${auditRouteMissing}`;

    test("audit prints denied event", { skip: auditSkip }, () => {
      assert.ok(deniedEventSeen, `no event for ${deniedHost} within ${EVENT_WAIT_MS} ms`);
      const eventLines = printed.slice(1, 1 + states.auditLines);
      assert.ok(
        eventLines.some(([action, host]) => action === "deny" && host === deniedHost),
        `no deny line for ${deniedHost} in ${JSON.stringify(eventLines)}`,
      );
      assert.ok(eventLines.every((line) => line.length === 4));
    });

    test("audits list prints egress payloads", { skip: auditSkip }, () => {
      const auditLines = printed.slice(1 + states.auditLines);
      assert.ok(auditLines.length > 0);
      assert.ok(auditLines.every(([category]) => category === "egress"));
      assert.ok(
        auditLines.some(([, payload]) => payload.host === deniedHost && payload.action === "deny"),
        `no deny payload for ${deniedHost} in ${JSON.stringify(auditLines)}`,
      );
    });
  });

  describe("typed errors from runtad", () => {
    test("unknown runtime is NotFoundError", async () => {
      await assert.rejects(runta.runtimes.get(`absent${randomBytes(3).toString("hex")}`), (error) => {
        assert.ok(error instanceof NotFoundError);
        assert.equal(error.status, 404);
        assert.equal(error.code, "not_found");
        return true;
      });
    });

    test("raw url is InvalidHostError", async () => {
      const hosts = ["pypi.org", "https://pypi.org/simple"];
      await assert.rejects(runtime.egress.allow(hosts, { normalize: false }), (error) => {
        assert.ok(error instanceof InvalidHostError);
        assert.equal(error.status, 400);
        assert.equal(error.code, "invalid_host");
        assert.equal(error.field, "hosts[1]");
        assert.equal(error.host, "https://pypi.org/simple");
        return true;
      });
    });

    test("stale if-match is VersionConflictError", async () => {
      const { version } = await runtime.egress.table();
      await runtime.egress.allow(["files.pythonhosted.org"], { ifVersion: version });
      await assert.rejects(
        runtime.egress.remove(["files.pythonhosted.org"], { ifVersion: version }),
        (error) => {
          assert.ok(error instanceof VersionConflictError);
          assert.equal(error.status, 409);
          assert.equal(error.code, "version_conflict");
          return true;
        },
      );
      assert.ok((await runtime.egress.list()).includes("files.pythonhosted.org"));
    });

    test("public suffix wildcard is PublicSuffixWildcardError", async () => {
      await assert.rejects(runtime.egress.allow(["*.com"]), (error) => {
        assert.ok(error instanceof PublicSuffixWildcardError);
        assert.equal(error.status, 400);
        return true;
      });
    });

    test("bad runtime name is InvalidNameError", async () => {
      await assert.rejects(runta.runtimes.create("Not A Name"), (error) => {
        assert.ok(error instanceof InvalidNameError);
        assert.equal(error.status, 400);
        return true;
      });
    });

    test("existing runtime is AlreadyExistsError", async () => {
      await assert.rejects(runta.runtimes.create(runtimeName), (error) => {
        assert.ok(error instanceof AlreadyExistsError);
        assert.equal(error.status, 409);
        return true;
      });
    });

    test("missing netns is NetnsNotFoundError", async () => {
      const name = `nn${randomBytes(3).toString("hex")}`;
      const outcome = await runta.runtimes.create(name, { netns: `/run/netns/absent-${name}` }).then(
        (created) => created,
        (error) => error,
      );
      if (!(outcome instanceof Error)) {
        await outcome.delete();
      }
      assert.ok(outcome instanceof NetnsNotFoundError, `create resolved or threw ${outcome}`);
      assert.equal(outcome.status, 422);
    });
  });
}
