// Socket path precedence: the `socket` option, then $RUNTA_SOCKET, then the default.
// No test connects to the default path, which may be a real daemon's socket.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";

import { DEFAULT_SOCKET, Runta } from "../src/index.js";
import { startFakeRuntad } from "./support/fake-runtad.mjs";

const savedEnv = process.env.RUNTA_SOCKET;
let fake;

before(async () => {
  fake = await startFakeRuntad();
});

after(async () => {
  await fake.close();
});

afterEach(() => {
  if (savedEnv === undefined) {
    delete process.env.RUNTA_SOCKET;
  } else {
    process.env.RUNTA_SOCKET = savedEnv;
  }
});

test("default socket without option or env", () => {
  delete process.env.RUNTA_SOCKET;
  assert.equal(DEFAULT_SOCKET, "/run/runta/runtad.sock");
  assert.equal(new Runta().socketPath, "/run/runta/runtad.sock");
});

test("empty env falls back to default", () => {
  process.env.RUNTA_SOCKET = "";
  assert.equal(new Runta().socketPath, DEFAULT_SOCKET);
});

test("env overrides default", async () => {
  process.env.RUNTA_SOCKET = fake.socketPath;
  const runta = new Runta();
  assert.equal(runta.socketPath, fake.socketPath);
  assert.equal((await runta.status()).version, "0.1.0");
});

test("option overrides env", async () => {
  process.env.RUNTA_SOCKET = "/nonexistent/env.sock";
  const runta = new Runta({ socket: fake.socketPath });
  assert.equal(runta.socketPath, fake.socketPath);
  assert.equal((await runta.status()).version, "0.1.0");
});

test("string argument is the socket", () => {
  process.env.RUNTA_SOCKET = "/nonexistent/env.sock";
  assert.equal(new Runta(fake.socketPath).socketPath, fake.socketPath);
});

test("env read at construction", () => {
  process.env.RUNTA_SOCKET = "/nonexistent/first.sock";
  const runta = new Runta();
  process.env.RUNTA_SOCKET = "/nonexistent/second.sock";
  assert.equal(runta.socketPath, "/nonexistent/first.sock");
});

test("timeout must be positive", () => {
  assert.throws(() => new Runta({ socket: fake.socketPath, timeout: 0 }), TypeError);
  assert.throws(() => new Runta({ socket: fake.socketPath, timeout: "30" }), TypeError);
});
