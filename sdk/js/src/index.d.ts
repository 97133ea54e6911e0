// Types of the runta JavaScript SDK. The API documents keep the field names of
// docs/api.md (snake_case) and their timestamps as ISO 8601 strings.

export declare const VERSION: string;
/** Socket used when neither the `socket` option nor $RUNTA_SOCKET is set. */
export declare const DEFAULT_SOCKET: "/run/runta/runtad.sock";
/** Environment variable read when the `socket` option is not given. */
export declare const SOCKET_ENV: "RUNTA_SOCKET";
/** Default limit for one call, in milliseconds. */
export declare const DEFAULT_TIMEOUT_MS: number;
/** `code` of the warning emitted when normalizeHost drops a port. */
export declare const PORT_IGNORED_WARNING_CODE: "RUNTA_PORT_IGNORED";

// Documents

export interface EgressState {
  enabled: boolean;
  version: number;
}

export interface RuntimeDocument {
  name: string;
  netns: string;
  adopted: boolean;
  created_at: string | null;
  host_interface: string | null;
  addresses: string[];
  gateway: string[];
  egress: EgressState;
}

export interface EgressAddress {
  address: string;
  expires_at: string | null;
  /** `resolver` (runtad's own lookup) or `dns` (an answer the DNS proxy handed out). */
  source: "resolver" | "dns" | (string & {}) | null;
}

export interface EgressEntry {
  host: string;
  kind: "exact" | "wildcard";
  status: "resolved" | "unresolved" | "wildcard" | (string & {});
  addresses: EgressAddress[];
}

/**
 * The TCP 80/443 connections runtad's egress gateway checks. `first` (the default)
 * checks connections to addresses outside the allowed sets and adds the address of each
 * allowed one to the sets. `all` (strict) checks every connection and adds no address.
 */
export type InspectMode = "first" | "all";

/** The inspect modes the API takes. */
export declare const INSPECT_MODES: readonly InspectMode[];

/** The full egress document of a runtime: policy, version and resolved entries. */
export interface Egress {
  enabled: boolean;
  allowed_hosts: string[];
  version: number;
  /** The gateway's inspect mode; missing from runtad versions without it. */
  inspect?: InspectMode;
  entries: EgressEntry[];
}

/** The writable part of an egress document. */
export interface EgressPolicy {
  enabled: boolean;
  allowed_hosts: string[];
  /** Leave it out (or null) to keep the runtime's inspect mode as it is. */
  inspect?: InspectMode | null;
}

/** The fields patchPolicy() changes; a missing field stays as it is. */
export interface EgressPolicyChanges {
  enabled?: boolean;
  allowed_hosts?: Hosts;
  inspect?: InspectMode | null;
}

/** One observed outbound attempt and its verdict; `count` > 1 for aggregated repeats. */
export interface EgressEvent {
  id?: number | string;
  action: string;
  host: string | null;
  path: string | null;
  reason: string | null;
  address: string | null;
  port: number | null;
  protocol: string | null;
  time: string | null;
  count: number;
  runtime?: string | null;
  [field: string]: unknown;
}

/** One audit record; `payload` depends on `category` (an egress event for `egress`). */
export interface Audit {
  id: number | string;
  time: string | null;
  runtime: string | null;
  category: string;
  payload: Record<string, unknown>;
  [field: string]: unknown;
}

export interface Status {
  version: string;
  uptime_seconds: number;
  runtimes: number;
  upstream_dns: string[];
  [field: string]: unknown;
}

/** One page of a list response. Iterate it for the items; pass `next` as `after`. */
export declare class Page<T> implements Iterable<T> {
  constructor(items: T[], next: string | null);
  readonly items: T[];
  /** Cursor of the following page, null on the last page. */
  readonly next: string | null;
  readonly length: number;
  [Symbol.iterator](): Iterator<T>;
}

// Options

/** URLs or host names: a single string is one host. */
export type Hosts = string | Iterable<string>;

export interface VersionOptions {
  /** Send If-Match: the write fails with VersionConflictError unless the policy has this version. */
  ifVersion?: number;
}

export interface HostOptions extends VersionOptions {
  /** Reduce URLs to bare hosts with normalizeHost before sending (default true). */
  normalize?: boolean;
}

export interface WriteOptions extends HostOptions {
  /** Allow a wildcard on a public suffix such as `*.com` (default false). */
  force?: boolean;
}

export interface PageOptions {
  limit?: number;
  /** The `next` cursor of the previous page. */
  after?: string;
  /** `desc` (newest first, the default) or `asc`. */
  order?: "asc" | "desc";
}

export interface AuditListOptions extends PageOptions {
  runtime?: Runtime | { name: string } | string;
  category?: string;
}

export interface RuntaOptions {
  /** Socket path; default $RUNTA_SOCKET, then /run/runta/runtad.sock. */
  socket?: string;
  /** Limit for one call, response included, in milliseconds (default 30000). */
  timeout?: number;
}

// Resources

/** The egress policy of one runtime. Every write resolves to the new Egress document. */
export declare class RuntimeEgress {
  /** Name of the runtime this policy belongs to. */
  readonly runtime: string;
  /** Fetch the full egress document: switch, hosts, version, addresses and expiries. */
  table(): Promise<Egress>;
  /** Fetch the allowed hosts. */
  list(): Promise<string[]>;
  getPolicy(): Promise<EgressPolicy>;
  /** Add hosts to the allowlist; hosts already present are left as they are. */
  allow(hosts: Hosts, options?: WriteOptions): Promise<Egress>;
  /** Remove hosts; a host that is not listed throws InvalidRequestError. */
  remove(hosts: Hosts, options?: HostOptions): Promise<Egress>;
  enable(options?: VersionOptions): Promise<Egress>;
  disable(options?: VersionOptions): Promise<Egress>;
  /** Replace the whole policy (PUT). */
  updatePolicy(policy: EgressPolicy, options?: WriteOptions): Promise<Egress>;
  /** Change only the given fields (PATCH). An unknown inspect mode throws InvalidInspectModeError. */
  patchPolicy(changes: EgressPolicyChanges, options?: WriteOptions): Promise<Egress>;
  /** Fetch one page of this runtime's egress events. */
  audit(limit?: number, options?: Omit<PageOptions, "limit">): Promise<Page<EgressEvent>>;
  audit(options: PageOptions): Promise<Page<EgressEvent>>;
}

/** A runtime fetched through Runta; its API `egress` object is `egress_state`. */
export declare class Runtime {
  readonly name: string;
  readonly netns: string;
  readonly adopted: boolean;
  readonly created_at: string | null;
  readonly host_interface: string | null;
  readonly addresses: string[];
  readonly gateway: string[];
  readonly egress_state: EgressState;
  /** The egress policy of this runtime. */
  readonly egress: RuntimeEgress;
  refresh(): Promise<Runtime>;
  delete(): Promise<void>;
  toJSON(): RuntimeDocument;
}

export declare class Runtimes {
  /** The egress policy of runtime `name`, without fetching the runtime first. */
  egress(name: string): RuntimeEgress;
  /** Create a runtime with its own netns, or adopt `netns` (a name under /run/netns or a path). */
  create(name: string, options?: { netns?: string }): Promise<Runtime>;
  get(name: string): Promise<Runtime>;
  list(): Promise<Runtime[]>;
  delete(name: string): Promise<void>;
}

export declare class Audits {
  list(options?: AuditListOptions): Promise<Page<Audit>>;
}

/** Client for runtad on its unix socket. */
export declare class Runta {
  constructor(options?: RuntaOptions | string);
  /** The socket path this client connects to. */
  readonly socketPath: string;
  readonly runtimes: Runtimes;
  readonly audits: Audits;
  status(): Promise<Status>;
}

// Host normalisation

/**
 * Return the bare canonical host of a URL or host name, for the egress allowlist.
 * Drops scheme, path, query and fragment, and drops a port with a RUNTA_PORT_IGNORED
 * warning. Throws InvalidHostError for anything that is not a host name or `*.` wildcard.
 */
export declare function normalizeHost(value: string): string;

// Errors

export interface RuntaErrorOptions {
  code?: string;
  field?: string | null;
  status?: number | null;
  cause?: unknown;
}

/** Root of every SDK error. */
export declare class RuntaError extends Error {
  static readonly code: string;
  constructor(message: string, options?: RuntaErrorOptions);
  /** The API's machine-readable error code. */
  code: string;
  /** The offending request field, such as `hosts[1]`, or null. */
  field: string | null;
  /** The HTTP status, null for errors thrown before a response arrived. */
  status: number | null;
}

export declare class InvalidRequestError extends RuntaError {}

/** An `inspect` value is not one of INSPECT_MODES. The SDK throws it before sending a request. */
export declare class InvalidInspectModeError extends InvalidRequestError {
  constructor(value: unknown, choices: string[]);
  /** The rejected value. */
  value: unknown;
  /** The modes the API takes. */
  choices: string[];
}

/** An allowlist entry is not a host name, rejected by normalizeHost or by runtad. */
export declare class InvalidHostError extends RuntaError {
  constructor(message: string, options?: RuntaErrorOptions & { host?: string; reason?: string });
  /** The rejected entry as given. */
  host: string;
  /** Code of the failed check, such as `has_userinfo`, or `invalid_host` from runtad. */
  reason: string;
}

export declare class PublicSuffixWildcardError extends RuntaError {}
export declare class InvalidNameError extends RuntaError {}
export declare class ForbiddenError extends RuntaError {}
export declare class NotFoundError extends RuntaError {}
export declare class AlreadyExistsError extends RuntaError {}
export declare class VersionConflictError extends RuntaError {}
export declare class NetnsNotFoundError extends RuntaError {}
export declare class KernelApplyFailedError extends RuntaError {}
export declare class MethodNotAllowedError extends RuntaError {}
export declare class SandboxUnavailableError extends RuntaError {}
export declare class PoolExhaustedError extends RuntaError {}
export declare class StoreUnavailableError extends RuntaError {}
export declare class AuditUnavailableError extends RuntaError {}
export declare class InternalError extends RuntaError {}

/** runtad cannot be reached on its unix socket. */
export declare class DaemonUnavailableError extends RuntaError {
  constructor(message: string, options: RuntaErrorOptions & { socketPath: string });
  /** The socket path that was tried. */
  socketPath: string;
}

/** runtad accepted the connection but sent no response in time. */
export declare class DaemonTimeoutError extends DaemonUnavailableError {}

/** runtad sent a response that does not follow the API contract. */
export declare class UnexpectedResponseError extends RuntaError {}

/** The error class for each API error code. */
export declare const API_ERRORS: Readonly<Record<string, typeof RuntaError>>;
