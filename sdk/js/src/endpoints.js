// Request builders for each API call in docs/api.md, and the host lists they send.

import { InvalidHostError, InvalidInspectModeError } from "./errors.js";
import { normalizeHost } from "./urls.js";

/**
 * The gateway's inspection modes (docs/api.md, "Egress policy"): "first" checks TCP 80/443
 * connections to addresses outside the kernel sets and learns allowed ones, "all" checks
 * every TCP 80/443 connection and learns nothing for those ports.
 */
export const INSPECT_MODES = Object.freeze(["first", "all"]);

/** Return `value` if it is one of INSPECT_MODES, else throw InvalidInspectModeError. */
function checkInspectMode(value) {
  if (!INSPECT_MODES.includes(value)) {
    throw new InvalidInspectModeError(value, [...INSPECT_MODES]);
  }
  return value;
}

/** Add `inspect` to a write body unless it is undefined or null, which leave the mode as it is. */
function withInspect(body, inspect) {
  if (inspect !== undefined && inspect !== null) {
    body.inspect = checkInspectMode(inspect);
  }
  return body;
}

/**
 * Return the path of a runtime. The name is percent-encoded so that a name with "/" or
 * "?" reaches runtad as one path segment, where it is rejected with invalid_name instead
 * of addressing another route.
 */
export function runtimePath(name) {
  if (typeof name !== "string") {
    throw new TypeError(`runtime name must be a string, not ${describe(name)}`);
  }
  const encoded = encodeURIComponent(name).replace(
    /[!'()*]/g,
    (character) => "%" + character.charCodeAt(0).toString(16).toUpperCase(),
  );
  return "/runtimes/" + encoded;
}

/** Return the name of a runtime given as a Runtime (or anything with a `name`) or a name. */
export function runtimeName(runtime) {
  if (typeof runtime === "string") {
    return runtime;
  }
  if (typeof runtime === "object" && runtime !== null && typeof runtime.name === "string") {
    return runtime.name;
  }
  throw new TypeError(`runtime must be a Runtime or a runtime name, not ${describe(runtime)}`);
}

function describe(value) {
  return value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
}

function versionHeaders(ifVersion) {
  if (ifVersion === undefined || ifVersion === null) {
    return undefined;
  }
  if (!Number.isInteger(ifVersion)) {
    throw new TypeError(`ifVersion must be an integer policy version, not ${JSON.stringify(ifVersion)}`);
  }
  return { "If-Match": String(ifVersion) };
}

/** Return the hosts as a list; a single string is one host, not a list of letters. */
function hostList(hosts, fieldName) {
  if (typeof hosts === "string") {
    return [hosts];
  }
  if (hosts === null || typeof hosts !== "object" || typeof hosts[Symbol.iterator] !== "function") {
    throw new TypeError(`${fieldName} must be a list of host names, not ${describe(hosts)}`);
  }
  return Array.from(hosts);
}

/**
 * Turn each URL or host into a bare host name with normalizeHost, before any request is
 * sent. The InvalidHostError of the first entry without a host name gets `field` set to
 * `FIELD[i]`. A dropped port emits a RUNTA_PORT_IGNORED warning.
 */
function normalizeHosts(hosts, fieldName) {
  return hosts.map((host, index) => {
    if (typeof host !== "string") {
      throw new TypeError(`${fieldName}[${index}] must be a host name string, not ${describe(host)}`);
    }
    try {
      return normalizeHost(host);
    } catch (error) {
      if (error instanceof InvalidHostError) {
        error.field = `${fieldName}[${index}]`;
      }
      throw error;
    }
  });
}

function prepareHosts(hosts, fieldName, normalize) {
  const entries = hostList(hosts, fieldName);
  return normalize === false ? entries : normalizeHosts(entries, fieldName);
}

function withForce(body, force) {
  if (force) {
    body.force = true;
  }
  return body;
}

export function listRuntimes() {
  return { method: "GET", path: "/runtimes" };
}

export function createRuntime(name, netns) {
  if (typeof name !== "string") {
    throw new TypeError(`runtime name must be a string, not ${describe(name)}`);
  }
  const body = { name };
  if (netns !== undefined && netns !== null) {
    body.netns = netns;
  }
  return { method: "POST", path: "/runtimes", body };
}

export function getRuntime(name) {
  return { method: "GET", path: runtimePath(name) };
}

export function deleteRuntime(name) {
  return { method: "DELETE", path: runtimePath(name) };
}

export function getEgress(name) {
  return { method: "GET", path: runtimePath(name) + "/egress" };
}

export function putEgress(name, policy, { force, ifVersion, normalize }) {
  if (policy === null || typeof policy !== "object" || typeof policy.enabled !== "boolean") {
    throw new TypeError(
      "updatePolicy() replaces the whole policy and needs { enabled: true or false, allowed_hosts: [...] }: " +
        "use patchPolicy() to change one field",
    );
  }
  if (typeof policy.allowed_hosts === "string" || !Array.isArray(policy.allowed_hosts)) {
    throw new TypeError(
      `allowed_hosts must be a list of host names, not ${JSON.stringify(policy.allowed_hosts)}: ` +
        'write allowed_hosts: ["api.github.com"]',
    );
  }
  const body = {
    enabled: policy.enabled,
    allowed_hosts: prepareHosts(policy.allowed_hosts, "allowed_hosts", normalize),
  };
  withInspect(body, policy.inspect);
  return {
    method: "PUT",
    path: runtimePath(name) + "/egress",
    body: withForce(body, force),
    headers: versionHeaders(ifVersion),
  };
}

export function patchEgress(name, changes, { force, ifVersion, normalize }) {
  if (changes === null || typeof changes !== "object") {
    throw new TypeError("patchPolicy() takes { enabled?, allowed_hosts?, inspect? }");
  }
  const body = {};
  if (changes.enabled !== undefined) {
    if (typeof changes.enabled !== "boolean") {
      throw new TypeError(`enabled must be true or false, not ${JSON.stringify(changes.enabled)}`);
    }
    body.enabled = changes.enabled;
  }
  if (changes.allowed_hosts !== undefined) {
    body.allowed_hosts = prepareHosts(changes.allowed_hosts, "allowed_hosts", normalize);
  }
  withInspect(body, changes.inspect);
  return {
    method: "PATCH",
    path: runtimePath(name) + "/egress",
    body: withForce(body, force),
    headers: versionHeaders(ifVersion),
  };
}

export function allowHosts(name, hosts, { force, ifVersion, normalize }) {
  const body = { hosts: prepareHosts(hosts, "hosts", normalize) };
  return {
    method: "POST",
    path: runtimePath(name) + "/egress/allow",
    body: withForce(body, force),
    headers: versionHeaders(ifVersion),
  };
}

export function removeHosts(name, hosts, { ifVersion, normalize }) {
  return {
    method: "POST",
    path: runtimePath(name) + "/egress/remove",
    body: { hosts: prepareHosts(hosts, "hosts", normalize) },
    headers: versionHeaders(ifVersion),
  };
}

export function setEnforcement(name, enabled, { ifVersion }) {
  const action = enabled ? "enable" : "disable";
  return {
    method: "POST",
    path: runtimePath(name) + "/egress/" + action,
    headers: versionHeaders(ifVersion),
  };
}

function pageQuery({ limit, after, order }) {
  if (limit !== undefined && limit !== null && !Number.isInteger(limit)) {
    throw new TypeError(`limit must be an integer, not ${JSON.stringify(limit)}`);
  }
  return { limit, after, order };
}

export function listEvents(name, options) {
  return { method: "GET", path: runtimePath(name) + "/egress/events", query: pageQuery(options) };
}

export function listAudits({ runtime, category, ...options }) {
  const name = runtime === undefined || runtime === null ? undefined : runtimeName(runtime);
  return { method: "GET", path: "/audits", query: { runtime: name, category, ...pageQuery(options) } };
}

export function getStatus() {
  return { method: "GET", path: "/status" };
}
