// Fetch wrapper for the native API under /api/v1. It sends the bearer token kept in
// sessionStorage, turns error responses into ApiError with the server's message and code, and
// reports 401 responses to the handler that app.js registers, which shows the token form.

/** Key under which the bearer token is kept in sessionStorage. */
export const TOKEN_KEY = "runledger.token";

/** An error response of the API, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let unauthorizedHandler = null;

/** Registers the function called with the ApiError of every 401 response. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** Returns the stored bearer token, or null. */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Stores the bearer token for this browser tab, or removes it when `token` is empty. */
export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage can be disabled; the token then lasts until the page reloads.
  }
}

/** Builds a URL from a path and query values, skipping null, undefined and empty values. */
export function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Sends a request and returns the Response; rejects with ApiError unless it is 2xx. */
export async function send(path, { method = "GET", query, body, headers = {}, signal } = {}) {
  const finalHeaders = { ...headers };
  const token = getToken();
  if (token) finalHeaders.Authorization = `Bearer ${token}`;
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    finalHeaders["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const url = apiUrl(path, query);
  let response;
  try {
    response = await fetch(url, { method, headers: finalHeaders, body: payload, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", `cannot reach the server for ${method} ${path}: ${error.message}`);
  }
  if (response.ok) return response;
  const error = await errorOf(response, method, path);
  if (error.status === 401 && unauthorizedHandler) unauthorizedHandler(error);
  throw error;
}

/** Reads the API's error body `{"error": {code, message, details}}` of a failed response. */
async function errorOf(response, method, path) {
  let code = `http_${response.status}`;
  let message = `${method} ${path} failed with HTTP ${response.status}`;
  let details = [];
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      details = body.error.details || [];
    }
  } catch {
    // Not JSON: keep the generic message with the status.
  }
  return new ApiError(response.status, code, message, details);
}

/** Sends a request and returns the decoded JSON body. */
export async function json(path, options = {}) {
  const response = await send(path, options);
  if (response.status === 204) return null;
  return response.json();
}

/** The API client that pages receive as `ctx.api`. */
export const api = {
  get: (path, query, options = {}) => json(path, { ...options, query }),
  post: (path, body, options = {}) => json(path, { ...options, method: "POST", body }),
  put: (path, body, options = {}) => json(path, { ...options, method: "PUT", body }),
  patch: (path, body, options = {}) => json(path, { ...options, method: "PATCH", body }),
  delete: (path, options = {}) => json(path, { ...options, method: "DELETE" }),
  send,
  /** Fetches a body as a Blob, such as an artifact for a preview or a download. */
  blob: async (path, options = {}) => (await send(path, options)).blob(),
};

/** Percent-encodes one path segment, such as a metric key that contains `/`. */
export function segment(value) {
  return encodeURIComponent(value);
}
