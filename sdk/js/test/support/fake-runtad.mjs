// A small stand-in for runtad on a unix socket in a temporary directory.
//
// It keeps runtimes and their egress policies in memory, serves the routes of
// docs/api.md with the documented shapes and error bodies, and records every request so
// tests can check what the SDK sent. It checks hosts only roughly: anything with a
// scheme, port, path, "@" or whitespace is invalid_host, and "*.com" or "*.org" needs force.

import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

const PUBLIC_SUFFIXES = new Set(["com", "org", "net", "co.uk"]);

class ApiFailure extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function runtimeDocument(runtime) {
  return {
    name: runtime.name,
    netns: runtime.netns,
    adopted: runtime.adopted,
    created_at: "2026-12-04T20:10:00.000Z",
    host_interface: runtime.adopted ? null : `rt-${runtime.name}`,
    addresses: ["10.213.0.2/30", "fd72:756e:7461::2/64"],
    gateway: ["10.213.0.1", "fd72:756e:7461::1"],
    egress: { enabled: runtime.enabled, version: runtime.version },
  };
}

function egressDocument(runtime) {
  return {
    enabled: runtime.enabled,
    allowed_hosts: [...runtime.hosts],
    version: runtime.version,
    inspect: runtime.inspect,
    entries: runtime.hosts.map((host) =>
      host.startsWith("*.")
        ? { host, kind: "wildcard", status: "wildcard", addresses: [] }
        : {
            host,
            kind: "exact",
            status: "resolved",
            addresses: [
              { address: "192.0.2.10", expires_at: "2026-12-04T20:15:00.000Z", source: "resolver" },
            ],
          },
    ),
  };
}

function checkHosts(hosts, fieldName, force) {
  if (!Array.isArray(hosts) || !hosts.every((host) => typeof host === "string")) {
    throw new ApiFailure(
      400,
      "invalid_request",
      `field '${fieldName}' must be a list of host names`,
      fieldName,
    );
  }
  hosts.forEach((host, index) => {
    if (/[:/@%\s?#]/.test(host) || host === "") {
      throw new ApiFailure(
        400,
        "invalid_host",
        `invalid host '${host}': give the bare host name`,
        `${fieldName}[${index}]`,
      );
    }
    if (host.startsWith("*.") && PUBLIC_SUFFIXES.has(host.slice(2)) && !force) {
      throw new ApiFailure(
        400,
        "public_suffix_wildcard",
        `'${host.slice(2)}' is a public suffix`,
        `${fieldName}[${index}]`,
      );
    }
  });
  return hosts.map((host) => host.toLowerCase());
}

export class FakeRuntad {
  constructor() {
    this.directory = mkdtempSync(join(tmpdir(), "runta-js-fake-"));
    this.socketPath = join(this.directory, "runtad.sock");
    this.runtimes = new Map();
    this.events = new Map();
    this.audits = [];
    this.requests = [];
    this.nextResponse = null;
    this.hangNext = false;
    // False makes the fake return 404 "no route" for the audit routes, like a runtad without them.
    this.auditRoutes = true;
    this.server = http.createServer((request, response) => this.#receive(request, response));
  }

  /** Start listening; resolves to this fake. */
  async start() {
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.socketPath, resolve);
    });
    return this;
  }

  async close() {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
    rmSync(this.directory, { recursive: true, force: true });
  }

  addRuntime(name, { enabled = false, hosts = [] } = {}) {
    const runtime = {
      name,
      netns: `/run/netns/runta-${name}`,
      adopted: false,
      enabled,
      hosts: [...hosts],
      version: 1,
      inspect: "first",
    };
    this.runtimes.set(name, runtime);
    this.events.set(name, []);
    return runtime;
  }

  addEvent(name, fields) {
    const id = this.audits.length + 1;
    const event = {
      action: "deny",
      host: null,
      path: null,
      reason: null,
      address: null,
      port: null,
      protocol: null,
      time: "2026-12-04T20:11:00.000Z",
      count: 1,
      ...fields,
    };
    this.events.get(name).push({ id, ...event });
    this.audits.push({ id, time: event.time, runtime: name, category: "egress", payload: event });
  }

  /** Send this status and body in response to the next request (an object is sent as JSON). */
  respondNext(status, body) {
    this.nextResponse = { status, body };
  }

  lastRequest() {
    return this.requests[this.requests.length - 1];
  }

  async #receive(request, response) {
    const chunks = [];
    for await (const chunk of request) {
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString("utf8");
    const url = new URL(request.url, "http://runtad");
    const record = {
      method: request.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: request.headers,
      body: text === "" ? undefined : JSON.parse(text),
    };
    this.requests.push(record);

    if (this.hangNext) {
      this.hangNext = false;
      return;
    }
    if (this.nextResponse !== null) {
      const { status, body } = this.nextResponse;
      this.nextResponse = null;
      const payload = typeof body === "string" ? body : JSON.stringify(body);
      response.writeHead(status, { "Content-Type": "application/json" }).end(payload);
      return;
    }

    try {
      const [status, body] = this.#route(record);
      if (status === 204) {
        response.writeHead(204).end();
      } else {
        response.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
      }
    } catch (error) {
      if (!(error instanceof ApiFailure)) {
        throw error;
      }
      const body = { error: { code: error.code, message: error.message, field: error.field } };
      response.writeHead(error.status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
    }
  }

  #runtime(name) {
    const runtime = this.runtimes.get(decodeURIComponent(name));
    if (runtime === undefined) {
      throw new ApiFailure(404, "not_found", `no runtime named '${decodeURIComponent(name)}'`);
    }
    return runtime;
  }

  #write(runtime, headers, change) {
    const expected = headers["if-match"];
    if (expected !== undefined && Number(expected) !== runtime.version) {
      throw new ApiFailure(
        409,
        "version_conflict",
        `If-Match ${expected} does not match version ${runtime.version}`,
        "If-Match",
      );
    }
    const before = JSON.stringify([runtime.enabled, runtime.hosts, runtime.inspect]);
    change();
    if (JSON.stringify([runtime.enabled, runtime.hosts, runtime.inspect]) !== before) {
      runtime.version += 1;
    }
    return [200, egressDocument(runtime)];
  }

  #route({ method, path, query, headers, body = {} }) {
    if (method === "GET" && path === "/v1/status") {
      return [200, { version: "0.1.0", uptime_seconds: 1.5, runtimes: this.runtimes.size, upstream_dns: [] }];
    }
    if (path === "/v1/runtimes") {
      if (method === "GET") {
        return [200, { items: [...this.runtimes.values()].map(runtimeDocument) }];
      }
      if (this.runtimes.has(body.name)) {
        throw new ApiFailure(409, "already_exists", `runtime '${body.name}' exists`, "name");
      }
      return [201, runtimeDocument(this.addRuntime(body.name))];
    }
    if (!this.auditRoutes && (path === "/v1/audits" || path.endsWith("/egress/events"))) {
      throw new ApiFailure(404, "not_found", `no route for ${method} ${path}: see /v1/openapi.json`);
    }
    if (method === "GET" && path === "/v1/audits") {
      const items = this.audits
        .filter((audit) => (query.runtime ?? audit.runtime) === audit.runtime)
        .filter((audit) => (query.category ?? audit.category) === audit.category)
        .slice(0, Number(query.limit ?? 100));
      return [200, { items, next: null }];
    }

    const match = /^\/v1\/runtimes\/([^/]+)(\/egress(?:\/([a-z]+))?)?$/.exec(path);
    if (match === null) {
      throw new ApiFailure(404, "not_found", `no route for ${method} ${path}`);
    }
    const [, name, egress, action] = match;
    const runtime = this.#runtime(name);
    if (egress === undefined) {
      if (method === "DELETE") {
        this.runtimes.delete(runtime.name);
        return [204, null];
      }
      return [200, runtimeDocument(runtime)];
    }
    if (action === undefined && method === "GET") {
      return [200, egressDocument(runtime)];
    }
    if (action === "events") {
      return [200, { items: this.events.get(runtime.name).slice(0, Number(query.limit ?? 100)), next: null }];
    }
    return this.#write(runtime, headers, () => {
      if (method === "PUT" || method === "PATCH") {
        if (body.allowed_hosts !== undefined || method === "PUT") {
          runtime.hosts = checkHosts(body.allowed_hosts, "allowed_hosts", body.force);
        }
        if (body.enabled !== undefined) {
          runtime.enabled = body.enabled;
        }
        if (body.inspect !== undefined) {
          if (body.inspect !== "first" && body.inspect !== "all") {
            throw new ApiFailure(
              400,
              "invalid_request",
              `field 'inspect' must be "first" or "all", not ${JSON.stringify(body.inspect)}`,
              "inspect",
            );
          }
          runtime.inspect = body.inspect;
        }
      } else if (action === "allow") {
        const hosts = checkHosts(body.hosts, "hosts", body.force);
        runtime.hosts.push(...hosts.filter((host) => !runtime.hosts.includes(host)));
      } else if (action === "remove") {
        const hosts = checkHosts(body.hosts, "hosts", true);
        hosts.forEach((host, index) => {
          if (!runtime.hosts.includes(host)) {
            throw new ApiFailure(
              400,
              "invalid_request",
              `host '${host}' is not in the allowlist`,
              `hosts[${index}]`,
            );
          }
        });
        runtime.hosts = runtime.hosts.filter((host) => !hosts.includes(host));
      } else if (action === "enable" || action === "disable") {
        runtime.enabled = action === "enable";
      }
    });
  }
}

/** Start a fake runtad; close it with `await fake.close()`. */
export async function startFakeRuntad() {
  return new FakeRuntad().start();
}
