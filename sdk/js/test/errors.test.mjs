// Error mapping: every API error code of docs/api.md, local rejections and an
// unreachable daemon, against a fake runtad on a unix socket.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  API_ERRORS,
  DaemonTimeoutError,
  DaemonUnavailableError,
  InvalidHostError,
  InvalidRequestError,
  NotFoundError,
  PublicSuffixWildcardError,
  Runta,
  RuntaError,
  UnexpectedResponseError,
  VersionConflictError,
} from "../src/index.js";
import { startFakeRuntad } from "./support/fake-runtad.mjs";

const API_DOC = new URL("../../../docs/api.md", import.meta.url);

/** Return [status, code] for each row of the error table in docs/api.md. */
function documentedErrors() {
  const rows = readFileSync(API_DOC, "utf8").matchAll(/^\| (\d{3}) \| `([a-z_]+)` \|/gm);
  return [...rows].map(([, status, code]) => [Number(status), code]);
}

let fake;
let runta;

before(async () => {
  fake = await startFakeRuntad();
  fake.addRuntime("worker");
  runta = new Runta({ socket: fake.socketPath, timeout: 2000 });
});

after(async () => {
  await fake.close();
});

describe("api error codes", () => {
  const documented = documentedErrors();

  test("docs table lists every code", () => {
    assert.equal(documented.length, 16);
    assert.deepEqual(documented.map(([, code]) => code).sort(), Object.keys(API_ERRORS).sort());
  });

  for (const [status, code] of documented) {
    test(`${code} maps to its class`, async () => {
      const errorClass = API_ERRORS[code];
      const message = `${code} happened: do the documented fix`;
      fake.respondNext(status, { error: { code, message, field: "hosts[0]" } });

      const error = await runta.runtimes.get("worker").then(
        () => assert.fail("no error thrown"),
        (thrown) => thrown,
      );

      assert.ok(error instanceof errorClass, `${error.name} is not ${errorClass.name}`);
      assert.ok(error instanceof RuntaError);
      assert.equal(error.name, errorClass.name);
      assert.equal(error.code, code);
      assert.equal(error.status, status);
      assert.equal(error.field, "hosts[0]");
      assert.equal(error.message, message);
    });
  }
});

test("unknown code maps to RuntaError", async () => {
  fake.respondNext(418, {
    error: { code: "not_a_known_code", message: "something new", field: null },
  });
  await assert.rejects(runta.runtimes.get("worker"), (error) => {
    assert.equal(error.constructor, RuntaError);
    assert.equal(error.code, "not_a_known_code");
    assert.equal(error.status, 418);
    assert.equal(error.field, null);
    return true;
  });
});

test("error body without message is unexpected", async () => {
  fake.respondNext(502, "<html>bad gateway</html>");
  await assert.rejects(runta.runtimes.get("worker"), (error) => {
    assert.ok(error instanceof UnexpectedResponseError);
    assert.equal(error.status, 502);
    assert.match(error.message, /HTTP 502 without an error body: <html>bad gateway/);
    return true;
  });
});

test("success body not json is unexpected", async () => {
  fake.respondNext(200, "not json");
  await assert.rejects(runta.runtimes.get("worker"), /HTTP 200 with a body that is not JSON: "not json"/);
});

test("egress document missing field is unexpected", async () => {
  fake.respondNext(200, { enabled: true, version: 3 });
  await assert.rejects(
    runta.runtimes.egress("worker").table(),
    (error) =>
      error instanceof UnexpectedResponseError && /field "allowed_hosts" is not a list/.test(error.message),
  );
});

test("unknown runtime is NotFoundError", async () => {
  await assert.rejects(runta.runtimes.get("nosuch"), (error) => {
    assert.ok(error instanceof NotFoundError);
    assert.equal(error.status, 404);
    assert.match(error.message, /nosuch/);
    return true;
  });
});

test("server invalid host names entry", async () => {
  const egress = runta.runtimes.egress("worker");
  await assert.rejects(egress.allow(["pypi.org", "https://evil.test/"], { normalize: false }), (error) => {
    assert.ok(error instanceof InvalidHostError);
    assert.equal(error.status, 400);
    assert.equal(error.field, "hosts[1]");
    assert.equal(error.host, "https://evil.test/");
    assert.equal(error.reason, "invalid_host");
    return true;
  });
});

test("server invalid host keeps reason", async () => {
  fake.respondNext(400, {
    error: { code: "invalid_host", message: "bad", field: "hosts[0]", reason: "ip_literal" },
  });
  await assert.rejects(runta.runtimes.egress("worker").allow(["pypi.org"]), {
    reason: "ip_literal",
    host: "pypi.org",
  });
});

test("local invalid host sends nothing", async () => {
  const sent = fake.requests.length;
  await assert.rejects(runta.runtimes.egress("worker").allow(["pypi.org", "user@pypi.org"]), (error) => {
    assert.ok(error instanceof InvalidHostError);
    assert.equal(error.field, "hosts[1]");
    assert.equal(error.host, "user@pypi.org");
    assert.equal(error.reason, "has_userinfo");
    assert.equal(error.status, null);
    return true;
  });
  assert.equal(fake.requests.length, sent);
});

test("local invalid host in policy names field", async () => {
  const policy = { enabled: true, allowed_hosts: ["192.0.2.1"] };
  await assert.rejects(runta.runtimes.egress("worker").updatePolicy(policy), {
    field: "allowed_hosts[0]",
    reason: "ip_literal",
  });
});

test("public suffix wildcard without force", async () => {
  await assert.rejects(runta.runtimes.egress("worker").allow("*.com"), PublicSuffixWildcardError);
});

test("remove absent host is InvalidRequestError", async () => {
  await assert.rejects(runta.runtimes.egress("worker").remove(["absent.example"]), (error) => {
    assert.ok(error instanceof InvalidRequestError);
    assert.equal(error.field, "hosts[0]");
    return true;
  });
});

test("stale version is VersionConflictError", async () => {
  const egress = runta.runtimes.egress("worker");
  const { version } = await egress.table();
  await egress.allow(["pypi.org"], { ifVersion: version });
  await assert.rejects(egress.allow(["example.com"], { ifVersion: version }), (error) => {
    assert.ok(error instanceof VersionConflictError);
    assert.equal(error.status, 409);
    return true;
  });
  assert.equal(fake.lastRequest().headers["if-match"], String(version));
});

test("missing socket is DaemonUnavailableError", async () => {
  const socketPath = join(fake.directory, "absent.sock");
  const client = new Runta({ socket: socketPath });
  await assert.rejects(client.status(), (error) => {
    assert.ok(error instanceof DaemonUnavailableError);
    assert.ok(error instanceof RuntaError);
    assert.equal(error.socketPath, socketPath);
    assert.equal(error.code, "daemon_unavailable");
    assert.match(
      error.message,
      new RegExp(`^cannot reach runtad on ${socketPath}: the socket does not exist`),
    );
    assert.match(error.message, /RUNTA_SOCKET/);
    return true;
  });
});

test("refused socket is DaemonUnavailableError", async () => {
  // A socket file whose listener has exited: connect() returns ECONNREFUSED.
  const socketPath = join(fake.directory, "stale.sock");
  const listener = `require("net").createServer().listen(${JSON.stringify(socketPath)}, () => process.exit(0))`;
  assert.equal(spawnSync(process.execPath, ["-e", listener]).status, 0);

  await assert.rejects(new Runta({ socket: socketPath }).status(), (error) => {
    assert.ok(error instanceof DaemonUnavailableError);
    assert.equal(error.socketPath, socketPath);
    assert.match(error.message, /connection refused, no daemon is listening/);
    return true;
  });
});

test("silent daemon is DaemonTimeoutError", async () => {
  fake.hangNext = true;
  const client = new Runta({ socket: fake.socketPath, timeout: 200 });
  await assert.rejects(client.status(), (error) => {
    assert.ok(error instanceof DaemonTimeoutError);
    assert.ok(error instanceof DaemonUnavailableError);
    assert.equal(error.code, "daemon_timeout");
    assert.equal(error.socketPath, fake.socketPath);
    assert.match(error.message, /sent no response within 0.2 s/);
    return true;
  });
});
