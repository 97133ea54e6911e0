// Checked views of the JSON documents in docs/api.md.
//
// Documents keep the API's field names (`allowed_hosts`, `created_at`) and its ISO 8601
// timestamps as strings. Each parse function checks the fields the SDK relies on and
// throws UnexpectedResponseError naming the first one that is missing or mistyped, so a
// daemon that breaks the contract fails at the call, not later in the caller's code.
// Fields this SDK does not know yet are kept.

import { UnexpectedResponseError } from "./errors.js";

const SHOWN_DOCUMENT_LENGTH = 300;

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function unexpected(problem, data) {
  const excerpt = JSON.stringify(data)?.slice(0, SHOWN_DOCUMENT_LENGTH);
  return new UnexpectedResponseError(
    `runtad returned a document this SDK cannot read (${problem}): ${excerpt}`,
  );
}

function requireObject(data, name) {
  if (!isObject(data)) {
    throw unexpected(`${name} is not an object`, data);
  }
  return data;
}

function requireField(data, key, check, description) {
  if (!check(data[key])) {
    throw unexpected(`field ${JSON.stringify(key)} is not ${description}`, data);
  }
  return data[key];
}

const isString = (value) => typeof value === "string";
const isBoolean = (value) => typeof value === "boolean";
const isInteger = (value) => Number.isInteger(value);
const isStringList = (value) => Array.isArray(value) && value.every(isString);
const isOptionalList = (value) => value === undefined || value === null || Array.isArray(value);

/**
 * Check an Egress document: the switch, the allowed hosts, the version and the entries.
 * @returns {import("./index.js").Egress}
 */
export function parseEgress(data) {
  requireObject(data, "egress document");
  requireField(data, "enabled", isBoolean, "true or false");
  requireField(data, "allowed_hosts", isStringList, "a list of host names");
  requireField(data, "version", isInteger, "an integer");
  requireField(data, "entries", isOptionalList, "a list");
  requireField(data, "inspect", (value) => value === undefined || isString(value), "a string");
  const entries = (data.entries ?? []).map((entry) => {
    requireObject(entry, "egress entry");
    requireField(entry, "host", isString, "a string");
    requireField(entry, "addresses", isOptionalList, "a list");
    return { ...entry, addresses: entry.addresses ?? [] };
  });
  return { ...data, entries };
}

/**
 * Check a Runtime document and return its fields, with the egress switch as `egress_state`.
 *
 * The API calls that object `egress`, but Runtime.egress is the policy resource, as in the
 * Python SDK.
 */
export function parseRuntimeFields(data) {
  requireObject(data, "runtime document");
  requireField(data, "name", isString, "a string");
  requireField(data, "netns", isString, "a string");
  const egress = requireObject(data.egress, 'field "egress"');
  requireField(egress, "enabled", isBoolean, "true or false");
  requireField(egress, "version", isInteger, "an integer");
  const { egress: egressState, ...fields } = data;
  return {
    ...fields,
    adopted: Boolean(data.adopted),
    created_at: data.created_at ?? null,
    host_interface: data.host_interface ?? null,
    addresses: data.addresses ?? [],
    gateway: data.gateway ?? [],
    egress_state: { ...egressState },
  };
}

/** Check one egress event: `action` is required, `count` defaults to 1. */
export function parseEgressEvent(data) {
  requireObject(data, "egress event");
  requireField(data, "action", isString, "a string");
  return {
    host: null,
    path: null,
    reason: null,
    address: null,
    port: null,
    protocol: null,
    time: null,
    ...data,
    count: data.count ?? 1,
  };
}

/** Check one audit record: `category` is required, `payload` defaults to {}. */
export function parseAudit(data) {
  requireObject(data, "audit record");
  requireField(data, "category", isString, "a string");
  return { time: null, runtime: null, ...data, payload: data.payload ?? {} };
}

/** Check the status document of GET /v1/status. */
export function parseStatus(data) {
  requireObject(data, "status document");
  requireField(data, "version", isString, "a string");
  return data;
}

/** Check a list response and return its `items`, each checked by `parseItem`. */
export function parseItems(data, parseItem) {
  requireObject(data, "list response");
  requireField(data, "items", Array.isArray, "a list");
  return data.items.map(parseItem);
}

/**
 * One page of a list response. Iterate it (or read `items`) for the items, and pass
 * `next` as `after` to fetch the following page; `next` is null on the last page.
 */
export class Page {
  constructor(items, next) {
    this.items = items;
    this.next = next;
  }

  get length() {
    return this.items.length;
  }

  [Symbol.iterator]() {
    return this.items[Symbol.iterator]();
  }
}

/** Check a page response: `items` and an optional `next` cursor. */
export function parsePage(data, parseItem) {
  const items = parseItems(data, parseItem);
  const next = data.next === undefined || data.next === null ? null : String(data.next);
  return new Page(items, next);
}
