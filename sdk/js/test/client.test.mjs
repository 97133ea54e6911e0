// Requests the SDK sends and the documents it returns, against a fake runtad.

import assert from "node:assert/strict";
import { after, before, beforeEach, mock, test } from "node:test";

import {
  INSPECT_MODES,
  InvalidInspectModeError,
  InvalidRequestError,
  Page,
  Runta,
  Runtime,
  RuntimeEgress,
  VERSION,
} from "../src/index.js";
import { startFakeRuntad } from "./support/fake-runtad.mjs";

let fake;
let runta;

before(async () => {
  fake = await startFakeRuntad();
  runta = new Runta({ socket: fake.socketPath });
});

after(async () => {
  await fake.close();
});

beforeEach(() => {
  fake.runtimes.clear();
  fake.audits.length = 0;
  fake.addRuntime("worker");
});

test("get returns runtime with egress", async () => {
  const runtime = await runta.runtimes.get("worker");
  assert.ok(runtime instanceof Runtime);
  assert.equal(runtime.name, "worker");
  assert.equal(runtime.netns, "/run/netns/runta-worker");
  assert.equal(runtime.adopted, false);
  assert.deepEqual(runtime.egress_state, { enabled: false, version: 1 });
  assert.ok(runtime.egress instanceof RuntimeEgress);
  assert.equal(runtime.egress.runtime, "worker");
  assert.deepEqual(runtime.addresses, ["10.213.0.2/30", "fd72:756e:7461::2/64"]);
});

test("runtime json is api document", async () => {
  const runtime = await runta.runtimes.get("worker");
  const document = JSON.parse(JSON.stringify(runtime));
  assert.deepEqual(document.egress, { enabled: false, version: 1 });
  assert.equal(document.egress_state, undefined);
  assert.equal(document.name, "worker");
});

test("request headers", async () => {
  await runta.runtimes.get("worker");
  const { headers, path } = fake.lastRequest();
  assert.equal(path, "/v1/runtimes/worker");
  assert.equal(headers["user-agent"], `runta-js/${VERSION}`);
  assert.equal(headers.accept, "application/json");
  assert.equal(headers.host, "runtad");
});

test("create sends netns", async () => {
  const runtime = await runta.runtimes.create("ci-7", { netns: "ci-7" });
  assert.equal(runtime.name, "ci-7");
  assert.deepEqual(fake.lastRequest().body, { name: "ci-7", netns: "ci-7" });
});

test("create without netns", async () => {
  await runta.runtimes.create("plain");
  assert.deepEqual(fake.lastRequest().body, { name: "plain" });
});

test("list returns runtimes", async () => {
  fake.addRuntime("other");
  const runtimes = await runta.runtimes.list();
  assert.deepEqual(
    runtimes.map((runtime) => runtime.name),
    ["worker", "other"],
  );
  assert.ok(runtimes.every((runtime) => runtime instanceof Runtime));
});

test("delete by name and by runtime", async () => {
  fake.addRuntime("other");
  assert.equal(await runta.runtimes.delete("other"), undefined);
  assert.equal(fake.lastRequest().method, "DELETE");
  const runtime = await runta.runtimes.get("worker");
  await runtime.delete();
  assert.deepEqual([...fake.runtimes.keys()], []);
});

test("runtime name is one path segment", async () => {
  await assert.rejects(runta.runtimes.get("a/b?c"));
  assert.equal(fake.requests.at(-1).path, "/v1/runtimes/a%2Fb%3Fc");
});

test("refresh fetches current state", async () => {
  const runtime = await runta.runtimes.get("worker");
  await runtime.egress.enable();
  const fresh = await runtime.refresh();
  assert.equal(fresh.egress_state.enabled, true);
  assert.equal(runtime.egress_state.enabled, false);
});

test("allow normalises urls", async () => {
  const egress = runta.runtimes.egress("worker");
  const result = await egress.allow(["https://PyPI.org/simple", "*.PythonHosted.org", "Bücher.example"]);
  assert.deepEqual(fake.lastRequest().body, {
    hosts: ["pypi.org", "*.pythonhosted.org", "xn--bcher-kva.example"],
  });
  assert.deepEqual(result.allowed_hosts, ["pypi.org", "*.pythonhosted.org", "xn--bcher-kva.example"]);
  assert.equal(result.entries[0].addresses[0].source, "resolver");
});

test("allow takes one string", async () => {
  await runta.runtimes.egress("worker").allow("pypi.org");
  assert.deepEqual(fake.lastRequest().body, { hosts: ["pypi.org"] });
});

test("allow drops port with warning", async () => {
  const emitWarning = mock.method(process, "emitWarning", () => {});
  try {
    await runta.runtimes.egress("worker").allow(["pypi.org:443"]);
    assert.equal(emitWarning.mock.callCount(), 1);
    assert.equal(emitWarning.mock.calls[0].arguments[1].code, "RUNTA_PORT_IGNORED");
  } finally {
    emitWarning.mock.restore();
  }
  assert.deepEqual(fake.lastRequest().body, { hosts: ["pypi.org"] });
});

test("allow with force", async () => {
  await runta.runtimes.egress("worker").allow(["*.com"], { force: true });
  assert.deepEqual(fake.lastRequest().body, { hosts: ["*.com"], force: true });
});

test("allow without normalize sends raw", async () => {
  await runta.runtimes.egress("worker").allow(["PyPI.org"], { normalize: false });
  assert.deepEqual(fake.lastRequest().body, { hosts: ["PyPI.org"] });
});

test("allow rejects non-list", async () => {
  await assert.rejects(runta.runtimes.egress("worker").allow(42), /hosts must be a list of host names/);
  await assert.rejects(runta.runtimes.egress("worker").allow([42]), /hosts\[0\] must be a host name string/);
});

test("remove normalises urls", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.allow(["pypi.org", "example.com"]);
  const result = await egress.remove(["https://pypi.org/"]);
  assert.deepEqual(fake.lastRequest().body, { hosts: ["pypi.org"] });
  assert.deepEqual(result.allowed_hosts, ["example.com"]);
});

test("enable and disable", async () => {
  const egress = runta.runtimes.egress("worker");
  assert.equal((await egress.enable()).enabled, true);
  assert.equal(fake.lastRequest().path, "/v1/runtimes/worker/egress/enable");
  assert.equal(fake.lastRequest().body, undefined);
  assert.equal((await egress.disable()).enabled, false);
  assert.equal(fake.lastRequest().path, "/v1/runtimes/worker/egress/disable");
});

test("enable sends if-match", async () => {
  await runta.runtimes.egress("worker").enable({ ifVersion: 1 });
  assert.equal(fake.lastRequest().headers["if-match"], "1");
});

test("if version must be integer", async () => {
  await assert.rejects(runta.runtimes.egress("worker").enable({ ifVersion: "1" }), TypeError);
});

test("update policy puts whole policy", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.allow(["pypi.org"]);
  const result = await egress.updatePolicy({
    enabled: true,
    allowed_hosts: ["https://api.github.com/repos"],
  });
  const request = fake.lastRequest();
  assert.equal(request.method, "PUT");
  assert.deepEqual(request.body, { enabled: true, allowed_hosts: ["api.github.com"] });
  assert.deepEqual(result.allowed_hosts, ["api.github.com"]);
  assert.equal(result.enabled, true);
});

test("update policy needs both fields", async () => {
  const egress = runta.runtimes.egress("worker");
  await assert.rejects(egress.updatePolicy({ allowed_hosts: ["pypi.org"] }), /use patchPolicy\(\)/);
  await assert.rejects(
    egress.updatePolicy({ enabled: true, allowed_hosts: "pypi.org" }),
    /write allowed_hosts: \[/,
  );
});

test("patch policy sends given fields", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.patchPolicy({ enabled: true });
  assert.equal(fake.lastRequest().method, "PATCH");
  assert.deepEqual(fake.lastRequest().body, { enabled: true });
  await egress.patchPolicy({ allowed_hosts: ["HTTPS://PYPI.ORG"] });
  assert.deepEqual(fake.lastRequest().body, { allowed_hosts: ["pypi.org"] });
});

test("list returns host strings", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.allow(["pypi.org", "*.pythonhosted.org"]);
  const hosts = await egress.list();
  assert.ok(Array.isArray(hosts));
  assert.deepEqual(hosts, ["pypi.org", "*.pythonhosted.org"]);
});

test("get policy", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.allow(["pypi.org"]);
  assert.deepEqual(await egress.getPolicy(), { enabled: false, allowed_hosts: ["pypi.org"], inspect: "first" });
});

test("get policy without inspect", async () => {
  fake.respondNext(200, { enabled: true, allowed_hosts: ["pypi.org"], version: 3 });
  const policy = await runta.runtimes.egress("worker").getPolicy();
  assert.deepEqual(policy, { enabled: true, allowed_hosts: ["pypi.org"] });
});

test("patch policy sends inspect", async () => {
  const result = await runta.runtimes.egress("worker").patchPolicy({ inspect: "all" });
  assert.equal(fake.lastRequest().method, "PATCH");
  assert.deepEqual(fake.lastRequest().body, { inspect: "all" });
  assert.equal(result.inspect, "all");
  assert.equal(result.version, 2);
  assert.equal((await runta.runtimes.egress("worker").table()).inspect, "all");
});

test("patch policy inspect with fields", async () => {
  await runta.runtimes
    .egress("worker")
    .patchPolicy({ enabled: true, allowed_hosts: ["https://pypi.org/"], inspect: "all" }, { ifVersion: 1 });
  const request = fake.lastRequest();
  assert.deepEqual(request.body, { enabled: true, allowed_hosts: ["pypi.org"], inspect: "all" });
  assert.equal(request.headers["if-match"], "1");
});

test("patch policy rejects bad inspect", async () => {
  const before = fake.requests.length;
  const error = await runta.runtimes
    .egress("worker")
    .patchPolicy({ inspect: "strict" })
    .then(
      () => assert.fail("no error thrown"),
      (thrown) => thrown,
    );
  assert.ok(error instanceof InvalidInspectModeError);
  assert.ok(error instanceof InvalidRequestError);
  assert.equal(error.name, "InvalidInspectModeError");
  assert.equal(error.code, "invalid_request");
  assert.equal(error.field, "inspect");
  assert.equal(error.value, "strict");
  assert.deepEqual(error.choices, ["first", "all"]);
  assert.match(error.message, /invalid inspect mode "strict": use "first" or "all"/);
  assert.equal(fake.requests.length, before);
});

test("patch policy null inspect sends nothing", async () => {
  await runta.runtimes.egress("worker").patchPolicy({ enabled: true, inspect: null });
  assert.deepEqual(fake.lastRequest().body, { enabled: true });
});

test("update policy sends inspect", async () => {
  const result = await runta.runtimes
    .egress("worker")
    .updatePolicy({ enabled: true, allowed_hosts: ["pypi.org"], inspect: "all" });
  assert.equal(fake.lastRequest().method, "PUT");
  assert.deepEqual(fake.lastRequest().body, { enabled: true, allowed_hosts: ["pypi.org"], inspect: "all" });
  assert.equal(result.inspect, "all");
});

test("update policy keeps inspect", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.patchPolicy({ inspect: "all" });
  const result = await egress.updatePolicy({ enabled: true, allowed_hosts: ["pypi.org"] });
  assert.deepEqual(fake.lastRequest().body, { enabled: true, allowed_hosts: ["pypi.org"] });
  assert.equal(result.inspect, "all");
});

test("update policy rejects bad inspect", async () => {
  await assert.rejects(
    runta.runtimes.egress("worker").updatePolicy({ enabled: true, allowed_hosts: [], inspect: "ALL" }),
    InvalidInspectModeError,
  );
});

test("policy round trip keeps inspect", async () => {
  const egress = runta.runtimes.egress("worker");
  await egress.patchPolicy({ allowed_hosts: ["pypi.org"], inspect: "all" });
  await egress.updatePolicy(await egress.getPolicy());
  assert.deepEqual(fake.lastRequest().body, { enabled: false, allowed_hosts: ["pypi.org"], inspect: "all" });
});

test("inspect modes exported", () => {
  assert.deepEqual([...INSPECT_MODES], ["first", "all"]);
  assert.ok(Object.isFrozen(INSPECT_MODES));
});

test("egress rejects non-string inspect", async () => {
  fake.respondNext(200, { enabled: true, allowed_hosts: [], version: 3, inspect: 7 });
  await assert.rejects(runta.runtimes.egress("worker").table(), /field "inspect" is not a string/);
});

test("audit sends limit and returns page", async () => {
  fake.addEvent("worker", { host: "example.com", reason: "host not in allowlist" });
  const page = await runta.runtimes.egress("worker").audit(20);
  assert.deepEqual(fake.lastRequest().query, { limit: "20" });
  assert.equal(fake.lastRequest().path, "/v1/runtimes/worker/egress/events");
  assert.ok(page instanceof Page);
  assert.equal(page.length, 1);
  assert.equal(page.next, null);
  const [event] = page;
  assert.equal(event.action, "deny");
  assert.equal(event.host, "example.com");
  assert.equal(event.count, 1);
});

test("audit takes options object", async () => {
  await runta.runtimes.egress("worker").audit({ limit: 5, after: "17", order: "asc" });
  assert.deepEqual(fake.lastRequest().query, { limit: "5", after: "17", order: "asc" });
  await runta.runtimes.egress("worker").audit(5, { order: "desc" });
  assert.deepEqual(fake.lastRequest().query, { limit: "5", order: "desc" });
});

test("audits list takes runtime object", async () => {
  fake.addEvent("worker", { host: "example.com" });
  const runtime = await runta.runtimes.get("worker");
  const page = await runta.audits.list({ runtime, category: "egress", limit: 20 });
  assert.deepEqual(fake.lastRequest().query, { runtime: "worker", category: "egress", limit: "20" });
  assert.equal(fake.lastRequest().path, "/v1/audits");
  assert.deepEqual(
    [...page].map((audit) => [audit.category, audit.payload.host]),
    [["egress", "example.com"]],
  );
});

test("audits list takes runtime name", async () => {
  await runta.audits.list({ runtime: "worker" });
  assert.deepEqual(fake.lastRequest().query, { runtime: "worker" });
  await runta.audits.list();
  assert.deepEqual(fake.lastRequest().query, {});
});

test("audits list rejects bad runtime", async () => {
  await assert.rejects(runta.audits.list({ runtime: 7 }), /runtime must be a Runtime or a runtime name/);
});

test("page next cursor", async () => {
  fake.respondNext(200, { items: [{ action: "allow", host: "pypi.org" }], next: 41 });
  const page = await runta.runtimes.egress("worker").audit(1);
  assert.equal(page.next, "41");
  assert.equal(page.items[0].reason, null);
});

test("status", async () => {
  const status = await runta.status();
  assert.equal(status.version, "0.1.0");
  assert.equal(status.runtimes, 1);
});
