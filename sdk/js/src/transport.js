// HTTP over runtad's unix socket: socket lookup, one request, response decoding.

import http from "node:http";

import {
  DaemonTimeoutError,
  DaemonUnavailableError,
  errorFromJson,
  InvalidHostError,
  UnexpectedResponseError,
} from "./errors.js";
import { VERSION } from "./version.js";

export const DEFAULT_SOCKET = "/run/runta/runtad.sock";
export const SOCKET_ENV = "RUNTA_SOCKET";
// Policy writes return only after runtad resolved the exact hosts and the kernel has loaded
// the new sets, which can take seconds with many hosts or a slow upstream resolver.
export const DEFAULT_TIMEOUT_MS = 30_000;

const API_PREFIX = "/v1";
const HOW_TO_POINT_AT_RUNTAD =
  "Start runtad (systemctl start runtad), or pass { socket: PATH } to new Runta() or set " +
  "RUNTA_SOCKET to the socket it listens on.";
const FIELD_INDEX = /^([a-z_]+)\[([0-9]+)\]$/;
const SHOWN_BODY_LENGTH = 200;

/**
 * Return the socket path: the argument, else $RUNTA_SOCKET, else the default.
 * @param {string | undefined | null} socket
 * @returns {string}
 */
export function resolveSocketPath(socket) {
  if (socket !== undefined && socket !== null) {
    return String(socket);
  }
  const fromEnv = process.env[SOCKET_ENV];
  if (fromEnv) {
    return fromEnv;
  }
  return DEFAULT_SOCKET;
}

/** Build the path and query string of an API call below /v1. */
function requestPath(request) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(request.query ?? {})) {
    if (value !== undefined && value !== null) {
      query.append(key, String(value));
    }
  }
  const text = query.toString();
  return API_PREFIX + request.path + (text ? "?" + text : "");
}

function unavailableError(socketPath, error) {
  if (error.code === "EACCES" || error.code === "EPERM") {
    return new DaemonUnavailableError(
      `permission denied on the runtad socket ${socketPath}: join the 'runta' group ` +
        "(usermod -aG runta USER, then log in again) or run as root.",
      { socketPath, cause: error },
    );
  }
  let reason;
  if (error.code === "ENOENT") {
    reason = "the socket does not exist";
  } else if (error.code === "ECONNREFUSED") {
    reason = "connection refused, no daemon is listening";
  } else {
    reason = error.message || error.code || String(error);
  }
  return new DaemonUnavailableError(
    `cannot reach runtad on ${socketPath}: ${reason}. ${HOW_TO_POINT_AT_RUNTAD}`,
    {
      socketPath,
      cause: error,
    },
  );
}

function timeoutError(socketPath, timeoutMs) {
  return new DaemonTimeoutError(
    `runtad on ${socketPath} sent no response within ${timeoutMs / 1000} s. A write may still take ` +
      "effect: check the runtime's state before retrying, or pass a longer timeout.",
    { socketPath },
  );
}

/** Set `host` of a server-side InvalidHostError to the request entry its `field` names. */
function attachRejectedHost(error, request) {
  if (!(error instanceof InvalidHostError) || error.field === null) {
    return error;
  }
  const match = FIELD_INDEX.exec(error.field);
  const entries = match ? request.body?.[match[1]] : undefined;
  const index = match ? Number(match[2]) : -1;
  if (Array.isArray(entries) && index < entries.length) {
    error.host = String(entries[index]);
  }
  return error;
}

/** Return the decoded JSON of a success response (null for 204) or throw its error. */
function decodeResponse(status, text, request) {
  if (status === 204) {
    return null;
  }
  const success = status >= 200 && status < 300;

  let body;
  try {
    body = JSON.parse(text);
  } catch {
    if (success) {
      throw new UnexpectedResponseError(
        `runtad returned HTTP ${status} with a body that is not JSON: ${JSON.stringify(text.slice(0, SHOWN_BODY_LENGTH))}`,
        { status },
      );
    }
    body = text.slice(0, SHOWN_BODY_LENGTH);
  }
  if (success) {
    return body;
  }
  throw attachRejectedHost(errorFromJson(status, body), request);
}

/** One HTTP request per API call, each on a fresh connection to the socket. */
export class Transport {
  constructor(socketPath, timeoutMs) {
    this.socketPath = socketPath;
    this.timeoutMs = timeoutMs;
  }

  /**
   * Send one API call and return its decoded JSON response.
   * @param {{method: string, path: string, query?: object, body?: unknown, headers?: object}} request
   */
  send(request) {
    const payload = request.body === undefined ? null : Buffer.from(JSON.stringify(request.body));
    const headers = {
      Host: "runtad",
      Accept: "application/json",
      "User-Agent": `runta-js/${VERSION}`,
      ...request.headers,
    };
    if (payload !== null) {
      headers["Content-Type"] = "application/json";
      headers["Content-Length"] = payload.length;
    }

    return new Promise((resolve, reject) => {
      let settled = false;
      let timer = null;
      const finish = (callback, value) => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          callback(value);
        }
      };

      // A fresh connection per call (no keep-alive) means a POST is never written to a
      // connection that runtad is closing, so a failed write never needs a retry.
      const options = {
        socketPath: this.socketPath,
        method: request.method,
        path: requestPath(request),
        headers,
        agent: false,
      };
      const outgoing = http.request(options, (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("error", (error) => finish(reject, unavailableError(this.socketPath, error)));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            finish(resolve, decodeResponse(response.statusCode, text, request));
          } catch (error) {
            finish(reject, error);
          }
        });
      });
      timer = setTimeout(() => {
        finish(reject, timeoutError(this.socketPath, this.timeoutMs));
        outgoing.destroy();
      }, this.timeoutMs);
      outgoing.on("error", (error) => finish(reject, unavailableError(this.socketPath, error)));
      outgoing.end(payload ?? undefined);
    });
  }
}
