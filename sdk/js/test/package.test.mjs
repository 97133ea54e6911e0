// The npm package: `npm pack` makes a tarball that installs and imports in a fresh
// project, with the types and without tests or scripts. Needs npm but no registry.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

import { VERSION } from "../src/index.js";

const PACKAGE_DIR = fileURLToPath(new URL("..", import.meta.url));
const manifest = JSON.parse(readFileSync(join(PACKAGE_DIR, "package.json"), "utf8"));
const npm = spawnSync("npm", ["--version"]);
const skip = npm.status === 0 ? false : "npm is not installed";

let workDir;
let tarball;
let packedFiles;

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, encoding: "utf8", timeout: 120_000 });
  assert.equal(result.status, 0, `${command} ${args.join(" ")} failed:\n${result.stderr}`);
  return result.stdout;
}

before(() => {
  if (skip) {
    return;
  }
  workDir = mkdtempSync(join(tmpdir(), "runta-js-pack-"));
  const [packed] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", workDir], PACKAGE_DIR));
  tarball = join(workDir, packed.filename);
  packedFiles = packed.files.map((file) => file.path).sort();

  const project = join(workDir, "project");
  run("mkdir", [project]);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  run("npm", ["install", "--offline", "--no-audit", "--no-fund", tarball], project);
});

after(() => {
  if (workDir) {
    rmSync(workDir, { recursive: true, force: true });
  }
});

test("manifest fields", () => {
  assert.equal(manifest.type, "module");
  assert.equal(manifest.engines.node, ">=18");
  assert.equal(manifest.types, "./src/index.d.ts");
  assert.equal(manifest.exports["."].types, "./src/index.d.ts");
  assert.equal(manifest.dependencies, undefined);
  assert.equal(manifest.version, VERSION);
});

test("tarball contains sources and types only", { skip }, () => {
  assert.ok(packedFiles.includes("src/index.js"));
  assert.ok(packedFiles.includes("src/index.d.ts"));
  assert.ok(packedFiles.includes("src/idna-tables.js"));
  assert.ok(packedFiles.includes("README.md"));
  assert.ok(packedFiles.includes("package.json"));
  assert.deepEqual(
    packedFiles.filter((path) => path.startsWith("test/") || path.startsWith("scripts/")),
    [],
  );
});

test("installed package imports", { skip }, () => {
  const project = join(workDir, "project");
  assert.ok(existsSync(join(project, "node_modules", "runta", "src", "index.d.ts")));
  const script = [
    'import { Runta, normalizeHost, NotFoundError, RuntaError } from "runta";',
    'const runta = new Runta({ socket: "/nonexistent/runtad.sock" });',
    "console.log(JSON.stringify([",
    '  normalizeHost("https://Bücher.example:443/x"),',
    "  runta.socketPath,",
    "  new NotFoundError('x') instanceof RuntaError,",
    "]));",
  ].join("\n");
  const output = spawnSync(process.execPath, ["--no-warnings", "--input-type=module", "-e", script], {
    cwd: project,
    encoding: "utf8",
  });
  assert.equal(output.status, 0, output.stderr);
  assert.deepEqual(JSON.parse(output.stdout), ["xn--bcher-kva.example", "/nonexistent/runtad.sock", true]);
});
