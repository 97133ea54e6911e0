// JavaScript SDK for runtad, the per-sandbox egress allowlist daemon.
//
//   import { Runta } from "runta";
//
//   const runta = new Runta();
//   const runtime = await runta.runtimes.get("worker");
//   await runtime.egress.allow(["pypi.org", "*.pythonhosted.org"]);
//   await runtime.egress.enable();
//   console.log(await runtime.egress.list());

export { Audits, Runta, Runtime, Runtimes } from "./client.js";
export { RuntimeEgress } from "./egress.js";
export {
  AlreadyExistsError,
  API_ERRORS,
  DaemonTimeoutError,
  DaemonUnavailableError,
  ForbiddenError,
  InternalError,
  InvalidHostError,
  InvalidInspectModeError,
  InvalidNameError,
  InvalidRequestError,
  KernelApplyFailedError,
  MethodNotAllowedError,
  SandboxUnavailableError,
  PoolExhaustedError,
  StoreUnavailableError,
  AuditUnavailableError,
  NetnsNotFoundError,
  NotFoundError,
  PublicSuffixWildcardError,
  RuntaError,
  UnexpectedResponseError,
  VersionConflictError,
} from "./errors.js";
export { INSPECT_MODES } from "./endpoints.js";
export { Page } from "./models.js";
export { DEFAULT_SOCKET, DEFAULT_TIMEOUT_MS, SOCKET_ENV } from "./transport.js";
export { normalizeHost, PORT_IGNORED_WARNING_CODE } from "./urls.js";
export { VERSION } from "./version.js";
