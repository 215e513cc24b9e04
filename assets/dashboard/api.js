// The REST client: the API key from sessionStorage as a bearer token,
// problem+json errors as ApiError, and a cap on requests in flight so a
// scroll through 100,000 rows cannot flood the server.

const KEY = "healthmon.key";

/** The API key of this tab, or "". */
export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

/** Keeps (or with "" forgets) the API key for this tab. */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** An error answer: status, problem title/detail and per-field errors. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

const listeners = new Set();

/** Calls `fn` whenever the server answers 401 (the key is missing or bad). */
export function onUnauthorized(fn) {
  listeners.add(fn);
}

const MAX_IN_FLIGHT = 4;
let inFlight = 0;
const waiting = [];

function acquire() {
  if (inFlight < MAX_IN_FLIGHT) {
    inFlight++;
    return Promise.resolve();
  }
  return new Promise((resolve) => waiting.push(resolve));
}

function release() {
  const next = waiting.shift();
  if (next) next();
  else inFlight--;
}

/**
 * Sends a request; resolves to {status, json, headers} for a 2xx, rejects
 * with ApiError otherwise. `body` is sent as JSON.
 */
export async function api(method, path, body) {
  await acquire();
  try {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const text = res.status === 204 ? "" : await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const err = new ApiError(res.status, json && typeof json === "object" ? json : { detail: text });
      if (res.status === 401) for (const fn of listeners) fn(err);
      throw err;
    }
    return { status: res.status, json, headers: res.headers };
  } finally {
    release();
  }
}

/** The `rel="next"` target of a Link header, or null. */
export function nextLink(headers) {
  const link = headers.get("Link");
  const m = link && link.match(/<([^>]+)>\s*;\s*rel="next"/);
  return m ? m[1] : null;
}
