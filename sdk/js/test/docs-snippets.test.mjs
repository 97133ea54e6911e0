// The JavaScript lines of the egress documentation, run verbatim at the top level of this
// module against a fake runtad, with console.log captured.

import assert from "node:assert/strict";
import { after, test } from "node:test";

import { Runta } from "../src/index.js";
import { startFakeRuntad } from "./support/fake-runtad.mjs";

const fake = await startFakeRuntad();
after(() => fake.close());
fake.addRuntime("worker");
fake.addEvent("worker", { action: "deny", host: "example.com", path: "/", reason: "host not in allowlist" });

const runta = new Runta({ socket: fake.socketPath });
const runtime = await runta.runtimes.get("worker");

const printed = [];
const consoleLog = console.log;
console.log = (...values) => printed.push(values);
const egressAfter = {};
try {
  await runtime.egress.allow(["pypi.org", "*.pythonhosted.org", "api.openai.com"]);
  await runtime.egress.enable();
  egressAfter.enable = await runtime.egress.table();
  console.log(await runtime.egress.list());
  await runtime.egress.disable();
  egressAfter.disable = await runtime.egress.table();
  await runtime.egress.updatePolicy({ enabled: true, allowed_hosts: ["api.github.com"] });
  egressAfter.updatePolicy = await runtime.egress.table();
  // prettier-ignore
  for (const event of await runtime.egress.audit(20)) { console.log(event.action, event.host, event.path, event.reason); }
  // prettier-ignore
  for (const audit of await runta.audits.list({ runtime, category: "egress", limit: 20 })) { console.log(audit.category, audit.payload); }
} finally {
  console.log = consoleLog;
}

test("allow then enable", () => {
  assert.equal(egressAfter.enable.enabled, true);
  assert.deepEqual(egressAfter.enable.allowed_hosts, ["pypi.org", "*.pythonhosted.org", "api.openai.com"]);
});

test("list prints host array", () => {
  assert.deepEqual(printed[0], [["pypi.org", "*.pythonhosted.org", "api.openai.com"]]);
});

test("disable turns enforcement off", () => {
  assert.equal(egressAfter.disable.enabled, false);
});

test("update policy replaces list", () => {
  assert.equal(egressAfter.updatePolicy.enabled, true);
  assert.deepEqual(egressAfter.updatePolicy.allowed_hosts, ["api.github.com"]);
});

test("audit prints event fields", () => {
  assert.deepEqual(printed[1], ["deny", "example.com", "/", "host not in allowlist"]);
});

test("audits list prints category and payload", () => {
  assert.equal(printed[2][0], "egress");
  assert.equal(printed[2][1].host, "example.com");
  assert.equal(printed[2][1].reason, "host not in allowlist");
  assert.equal(printed.length, 3);
});

test("requests follow docs order", () => {
  const writes = fake.requests.filter((request) => request.method !== "GET").map((request) => request.path);
  assert.deepEqual(writes, [
    "/v1/runtimes/worker/egress/allow",
    "/v1/runtimes/worker/egress/enable",
    "/v1/runtimes/worker/egress/disable",
    "/v1/runtimes/worker/egress",
  ]);
});
