// The client, `Runta`, and the resources it hands out.
//
//   const runta = new Runta();
//   const runtime = await runta.runtimes.get("worker");
//   await runtime.egress.allow(["pypi.org", "*.pythonhosted.org"]);
//   await runtime.egress.enable();

import { RuntimeEgress } from "./egress.js";
import * as endpoints from "./endpoints.js";
import { parseAudit, parseItems, parsePage, parseRuntimeFields, parseStatus } from "./models.js";
import { DEFAULT_TIMEOUT_MS, resolveSocketPath, Transport } from "./transport.js";

/**
 * A runtime (sandbox) fetched through Runta. Its fields are those of the API's Runtime
 * document, except that the `egress` object is `egress_state`, because `egress` manages
 * the runtime's policy.
 */
export class Runtime {
  #transport;
  #egress;

  constructor(data, transport) {
    Object.assign(this, parseRuntimeFields(data));
    this.#transport = transport;
    this.#egress = new RuntimeEgress(transport, this.name);
  }

  /** The egress policy of this runtime. */
  get egress() {
    return this.#egress;
  }

  /** Fetch this runtime again and return its current state. */
  async refresh() {
    return new Runtime(await this.#transport.send(endpoints.getRuntime(this.name)), this.#transport);
  }

  /** Delete this runtime; a created netns goes with it, an adopted one stays. */
  async delete() {
    await this.#transport.send(endpoints.deleteRuntime(this.name));
  }

  /** Return the API's Runtime document. */
  toJSON() {
    const { egress_state: egress, ...fields } = this;
    return { ...fields, egress };
  }
}

/** Create, fetch, list and delete runtimes. */
export class Runtimes {
  #transport;

  constructor(transport) {
    this.#transport = transport;
  }

  /** Return the egress policy of runtime `name` without fetching the runtime first. */
  egress(name) {
    endpoints.runtimePath(name);
    return new RuntimeEgress(this.#transport, name);
  }

  /** Create a runtime with its own netns, or adopt `netns` (a name under /run/netns or a path). */
  async create(name, { netns } = {}) {
    return new Runtime(await this.#transport.send(endpoints.createRuntime(name, netns)), this.#transport);
  }

  async get(name) {
    return new Runtime(await this.#transport.send(endpoints.getRuntime(name)), this.#transport);
  }

  async list() {
    const data = await this.#transport.send(endpoints.listRuntimes());
    return parseItems(data, (item) => new Runtime(item, this.#transport));
  }

  /** Delete a runtime; a created netns goes with it, an adopted one stays. */
  async delete(name) {
    await this.#transport.send(endpoints.deleteRuntime(name));
  }
}

/** Audit records of all runtimes. */
export class Audits {
  #transport;

  constructor(transport) {
    this.#transport = transport;
  }

  /**
   * Fetch one page of audit records, newest first unless `order: "asc"`, optionally for
   * one runtime (a Runtime or a name) and one category.
   */
  async list({ runtime, category, limit, after, order } = {}) {
    const request = endpoints.listAudits({ runtime, category, limit, after, order });
    return parsePage(await this.#transport.send(request), parseAudit);
  }
}

/**
 * Client for runtad on its unix socket.
 *
 * The socket is the `socket` option, else $RUNTA_SOCKET, else /run/runta/runtad.sock.
 * `timeout` is the limit in milliseconds for one call, response included.
 */
export class Runta {
  #transport;

  constructor(options = {}) {
    const { socket, timeout = DEFAULT_TIMEOUT_MS } =
      typeof options === "string" ? { socket: options } : (options ?? {});
    if (!(Number.isFinite(timeout) && timeout > 0)) {
      throw new TypeError(
        `timeout must be a positive number of milliseconds, not ${JSON.stringify(timeout)}`,
      );
    }
    /** The socket path this client connects to. */
    this.socketPath = resolveSocketPath(socket);
    this.#transport = new Transport(this.socketPath, timeout);
    this.runtimes = new Runtimes(this.#transport);
    this.audits = new Audits(this.#transport);
  }

  /** Fetch runtad's version, uptime, runtime count and upstream DNS servers. */
  async status() {
    return parseStatus(await this.#transport.send(endpoints.getStatus()));
  }
}
