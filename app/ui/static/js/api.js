// The REST API from the browser. The key lives in sessionStorage (this tab only, gone when it
// closes) and travels in the Authorization header, never in a URL, so it stays out of logs.

const KEY = "cube.apiKey";

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

/** The API's error shape {error: {type, code, message, param}} as a throwable. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.param = e.param || null;
  }
}

// A 401 asks for a key; the app registers what to do then (show the key dialog).
let onUnauthorized = () => {};
export const whenUnauthorized = (fn) => { onUnauthorized = fn; };

export function authHeaders(extra = {}) {
  const key = getKey();
  return key ? {...extra, Authorization: `Bearer ${key}`} : extra;
}

/** Paths are relative ("v1/..."), so the dashboard works under a path prefix too. */
export async function api(path, {method = "GET", json, form, signal} = {}) {
  const init = {method, headers: authHeaders({Accept: "application/json"}), signal};
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;  // FormData: the browser sets the multipart boundary itself
  }
  const response = await fetch(path, init);
  const body = await response.json().catch(() => null);
  if (response.status === 401) onUnauthorized();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
