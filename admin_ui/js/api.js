// The management API, from the page's own origin. The key lives in
// sessionStorage: it is gone when the browser session ends.

const STORAGE = "edgegw.apiKey";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body || {};
  }
}

let unauthorized = null;

/** What to do when the key is refused (401): sign in again. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export function getKey() {
  try {
    return sessionStorage.getItem(STORAGE);
  } catch {
    return null;
  }
}

export function setKey(key) {
  sessionStorage.setItem(STORAGE, key);
}

export function clearKey() {
  sessionStorage.removeItem(STORAGE);
}

const WORDS = {
  0: "the gateway could not be reached",
  400: "bad request",
  401: "not signed in",
  403: "not allowed",
  404: "not found",
  409: "conflict",
  413: "too large",
  422: "could not be processed",
  429: "too many attempts",
  500: "internal error of the gateway",
  502: "an upstream failed",
  503: "unavailable",
  504: "timed out",
};

/**
 * Call the API: api("POST", "/endpoints", {name: ...}). Answers `data` of
 * the envelope; throws ApiError with the API's own message otherwise.
 * options: {key, raw (a Blob/File body sent as is), contentType}.
 */
export async function api(method, path, body, options = {}) {
  const key = options.key !== undefined ? options.key : getKey();
  const headers = {};
  if (key) headers["Authorization"] = "Bearer " + key;
  const init = { method, headers, credentials: "same-origin", cache: "no-store", redirect: "error" };
  if (options.raw !== undefined) {
    init.body = options.raw;
    headers["Content-Type"] = options.contentType || "application/octet-stream";
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch("/api" + path, init);
  } catch (error) {
    throw new ApiError(0, `The gateway could not be reached (${error.message}). Is it running?`);
  }
  const text = await response.text();
  let document = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    document = null;
  }
  if (response.ok && document && document.ok === true) return document.data;
  let message;
  if (document && typeof document.error === "string") {
    message = document.error;
  } else {
    const words = WORDS[response.status] || response.statusText || "error";
    message = `HTTP ${response.status} (${words})` + (text ? ": " + text.slice(0, 300) : "");
  }
  const error = new ApiError(response.status, message, document);
  if (response.status === 401 && unauthorized && options.key === undefined) unauthorized(error);
  throw error;
}

/** Every item of a paged list: GET path?limit=500&page=1.. until the last page. */
export async function listAll(path, params = {}) {
  const items = [];
  for (let page = 1; page < 1000; page++) {
    const query = new URLSearchParams(Object.assign({}, params, { page: String(page), limit: "500" }));
    const data = await api("GET", `${path}?${query}`);
    items.push(...data.items);
    if (page >= data.pages) break;
  }
  return items;
}
