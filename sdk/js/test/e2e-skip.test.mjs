// The end-to-end file skips only its audit tests, with the reason, when runtad returns
// 404 "no route" for the audit routes. Runs that file against a fake runtad.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { startFakeRuntad } from "./support/fake-runtad.mjs";

const E2E_DIR = fileURLToPath(new URL("./e2e/", import.meta.url));

let fake;
let output;

/** Run node's test runner on the e2e directory; the fake must keep serving meanwhile. */
function runE2e(env) {
  // Without NODE_TEST_CONTEXT the child is a test run of its own, not a child of this one.
  const { NODE_TEST_CONTEXT, ...parentEnv } = process.env;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--test", "--test-reporter=tap", E2E_DIR], {
      env: { ...parentEnv, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let text = "";
    child.stdout.on("data", (chunk) => (text += chunk));
    child.stderr.on("data", (chunk) => (text += chunk));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on("error", reject);
    child.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

before(async () => {
  fake = await startFakeRuntad();
  fake.addRuntime("worker", { hosts: ["pypi.org"], enabled: true });
  fake.auditRoutes = false;
  output = await runE2e({
    RUNTA_SOCKET: fake.socketPath,
    RUNTA_TEST_RUNTIME: "worker",
    RUNTA_TEST_DENIED_HOST: "example.com",
  });
});

after(async () => {
  await fake.close();
});

test("audit tests skip with route message", () => {
  for (const name of ["audit prints denied event", "audits list prints egress payloads"]) {
    const line = output.split("\n").find((text) => text.includes(`- ${name}`));
    assert.match(
      line ?? "",
      /^\s*ok \d+ - .* # SKIP runtad serves no audit routes yet: no route for GET \/v1\/runtimes\/worker\/egress\/events/,
      output,
    );
  }
});

test("snippet tests still run", () => {
  assert.match(output, /^\s*ok \d+ - list prints host array$/m, output);
  assert.match(output, /^\s*ok \d+ - update policy replaces list$/m, output);
});

test("e2e file skips without environment", async () => {
  const text = await runE2e({ RUNTA_SOCKET: "", RUNTA_TEST_RUNTIME: "" });
  assert.match(text, /# SKIP needs RUNTA_SOCKET and RUNTA_TEST_RUNTIME/);
});
