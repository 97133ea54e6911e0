// The egress policy of one runtime.

import * as endpoints from "./endpoints.js";
import { parseEgress, parseEgressEvent, parsePage } from "./models.js";

/**
 * The egress policy of one runtime. Every write resolves to the new Egress document.
 *
 * Host arguments take URLs or host names, reduced to bare hosts by normalizeHost unless
 * `normalize: false` is given. `ifVersion` sends If-Match, so the write fails with
 * VersionConflictError when the policy changed since that version was read.
 */
export class RuntimeEgress {
  #transport;

  constructor(transport, runtime) {
    this.#transport = transport;
    /** Name of the runtime this policy belongs to. */
    this.runtime = runtime;
  }

  async #write(request) {
    return parseEgress(await this.#transport.send(request));
  }

  /** Fetch the full egress document: switch, hosts, version, addresses and expiries. */
  async table() {
    return parseEgress(await this.#transport.send(endpoints.getEgress(this.runtime)));
  }

  /** Fetch the allowed hosts as a plain array of strings. */
  async list() {
    return [...(await this.table()).allowed_hosts];
  }

  /**
   * Fetch the writable part of the policy: `{ enabled, allowed_hosts, inspect }`, without
   * `inspect` when runtad does not report it.
   */
  async getPolicy() {
    const { enabled, allowed_hosts, inspect } = await this.table();
    return inspect === undefined ? { enabled, allowed_hosts } : { enabled, allowed_hosts, inspect };
  }

  /**
   * Add hosts to the allowlist; hosts already present are left as they are. `force`
   * allows a wildcard over a public suffix (`*.com`).
   */
  async allow(hosts, { force = false, ifVersion, normalize = true } = {}) {
    return this.#write(endpoints.allowHosts(this.runtime, hosts, { force, ifVersion, normalize }));
  }

  /** Remove hosts from the allowlist; a host that is not listed throws InvalidRequestError. */
  async remove(hosts, { ifVersion, normalize = true } = {}) {
    return this.#write(endpoints.removeHosts(this.runtime, hosts, { ifVersion, normalize }));
  }

  /** Turn enforcement on: outbound traffic is denied unless its host is allowed. */
  async enable({ ifVersion } = {}) {
    return this.#write(endpoints.setEnforcement(this.runtime, true, { ifVersion }));
  }

  /** Turn enforcement off: outbound traffic is unrestricted but still observed. */
  async disable({ ifVersion } = {}) {
    return this.#write(endpoints.setEnforcement(this.runtime, false, { ifVersion }));
  }

  /**
   * Replace the whole policy (PUT); hosts not in `policy.allowed_hosts` are removed. The
   * inspect mode stays as it is unless `policy.inspect` is given.
   */
  async updatePolicy(policy, { force = false, ifVersion, normalize = true } = {}) {
    return this.#write(endpoints.putEgress(this.runtime, policy, { force, ifVersion, normalize }));
  }

  /**
   * Change only the given fields of the policy (PATCH): `enabled`, `allowed_hosts` and
   * `inspect`, the gateway's mode ("first" or "all"). Another inspect value throws
   * InvalidInspectModeError before any request is sent.
   */
  async patchPolicy(changes, { force = false, ifVersion, normalize = true } = {}) {
    return this.#write(endpoints.patchEgress(this.runtime, changes, { force, ifVersion, normalize }));
  }

  /**
   * Fetch one page of this runtime's egress events, newest first unless `order: "asc"`.
   * Takes `audit(limit, { after, order })` or `audit({ limit, after, order })`.
   */
  async audit(limit, options = {}) {
    const query = typeof limit === "object" && limit !== null ? limit : { ...options, limit };
    const data = await this.#transport.send(endpoints.listEvents(this.runtime, query));
    return parsePage(data, parseEgressEvent);
  }
}
