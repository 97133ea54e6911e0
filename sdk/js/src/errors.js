// Errors thrown by the runta SDK.
//
// Every error runtad returns carries a stable code (docs/api.md, "Errors"). Each code has
// one subclass of RuntaError here, and an unknown code throws RuntaError itself.

/**
 * Root of every SDK error: an API error, a local rejection or an unreachable daemon.
 *
 * `code` is the API's machine-readable code, `field` names the offending request field
 * (`hosts[1]`) or is null, and `status` is the HTTP status, null for errors thrown before
 * a response arrived.
 */
export class RuntaError extends Error {
  static code = "unknown";

  constructor(message, { code, field = null, status = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code ?? new.target.code;
    this.field = field;
    this.status = status;
  }
}

/** The body, a field or a query parameter is malformed. */
export class InvalidRequestError extends RuntaError {
  static code = "invalid_request";
}

/**
 * An `inspect` value is neither of the gateway's modes, thrown before any request is sent.
 * `value` is the rejected value and `choices` the modes the API takes.
 */
export class InvalidInspectModeError extends InvalidRequestError {
  constructor(value, choices) {
    const names = choices.map((choice) => JSON.stringify(choice)).join(" or ");
    super(
      `invalid inspect mode ${JSON.stringify(value) ?? String(value)}: use ${names} ` +
        '("first" checks TCP 80/443 connections to addresses outside the allowed sets, ' +
        '"all" checks every TCP 80/443 connection)',
      { field: "inspect" },
    );
    this.value = value;
    this.choices = choices;
  }
}

/**
 * An allowlist entry is not a host name.
 *
 * Thrown by normalizeHost and by the SDK helpers before a request is sent, and for a
 * rejection by runtad. `host` is the rejected entry (empty when runtad's `field` names no
 * entry of the request) and `reason` the code of the check that failed, such as
 * `has_userinfo` or `ip_literal`, or `invalid_host` for a rejection by runtad.
 */
export class InvalidHostError extends RuntaError {
  static code = "invalid_host";

  constructor(message, { host = "", reason = "invalid_host", ...options } = {}) {
    super(message, options);
    this.host = host;
    this.reason = reason;
  }
}

/** A wildcard covers a public suffix (`*.com`): retry with `{ force: true }`. */
export class PublicSuffixWildcardError extends RuntaError {
  static code = "public_suffix_wildcard";
}

/** A runtime name does not match `[a-z0-9][a-z0-9_-]{0,30}`. */
export class InvalidNameError extends RuntaError {
  static code = "invalid_name";
}

/** The caller is neither root nor in the API group. */
export class ForbiddenError extends RuntaError {
  static code = "forbidden";
}

/** No runtime of that name, or no such route. */
export class NotFoundError extends RuntaError {
  static code = "not_found";
}

/** A runtime of that name exists. */
export class AlreadyExistsError extends RuntaError {
  static code = "already_exists";
}

/** The If-Match version differs from the stored policy version. */
export class VersionConflictError extends RuntaError {
  static code = "version_conflict";
}

/** The netns given on create names no existing network namespace. */
export class NetnsNotFoundError extends RuntaError {
  static code = "netns_not_found";
}

/** The kernel rejected the ruleset or set update; the previous rules stay in force. */
export class KernelApplyFailedError extends RuntaError {
  static code = "kernel_apply_failed";
}

/** The route exists but does not take this HTTP method. */
export class MethodNotAllowedError extends RuntaError {
  static code = "method_not_allowed";
}

/** The sandbox is stored but failed to start; the message says why. */
export class SandboxUnavailableError extends RuntaError {
  static code = "sandbox_unavailable";
}

/** No free subnet is left in the address pools for a new sandbox. */
export class PoolExhaustedError extends RuntaError {
  static code = "pool_exhausted";
}

/** The state database could not be written; nothing was changed. */
export class StoreUnavailableError extends RuntaError {
  static code = "store_unavailable";
}

/** The audit store cannot be read right now. */
export class AuditUnavailableError extends RuntaError {
  static code = "audit_unavailable";
}

/** A fault inside runtad; its log has the traceback. */
export class InternalError extends RuntaError {
  static code = "internal";
}

/** runtad cannot be reached on its unix socket; `socketPath` is the path tried. */
export class DaemonUnavailableError extends RuntaError {
  static code = "daemon_unavailable";

  constructor(message, { socketPath, ...options }) {
    super(message, options);
    this.socketPath = socketPath;
  }
}

/** runtad accepted the connection but sent no response in time. */
export class DaemonTimeoutError extends DaemonUnavailableError {
  static code = "daemon_timeout";
}

/** runtad sent a response that does not follow the API contract. */
export class UnexpectedResponseError extends RuntaError {
  static code = "unexpected_response";
}

/** The error class for each API error code. */
export const API_ERRORS = Object.freeze(
  Object.fromEntries(
    [
      InvalidRequestError,
      InvalidHostError,
      PublicSuffixWildcardError,
      InvalidNameError,
      ForbiddenError,
      NotFoundError,
      AlreadyExistsError,
      VersionConflictError,
      NetnsNotFoundError,
      KernelApplyFailedError,
      MethodNotAllowedError,
      SandboxUnavailableError,
      PoolExhaustedError,
      StoreUnavailableError,
      AuditUnavailableError,
      InternalError,
    ].map((errorClass) => [errorClass.code, errorClass]),
  ),
);

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Build the error for an error response from its status and decoded JSON body.
 * @param {number} status
 * @param {unknown} body
 * @returns {RuntaError}
 */
export function errorFromJson(status, body) {
  const error = isObject(body) ? body.error : undefined;
  if (!isObject(error) || typeof error.message !== "string") {
    const excerpt = typeof body === "string" ? body : JSON.stringify(body);
    return new UnexpectedResponseError(`runtad returned HTTP ${status} without an error body: ${excerpt}`, {
      status,
    });
  }

  const code = typeof error.code === "string" ? error.code : undefined;
  const field = typeof error.field === "string" ? error.field : null;
  const options = { code, field, status };
  if (code === InvalidHostError.code && typeof error.reason === "string") {
    options.reason = error.reason;
  }
  const errorClass =
    (code !== undefined && Object.hasOwn(API_ERRORS, code) && API_ERRORS[code]) || RuntaError;
  return new errorClass(error.message, options);
}
