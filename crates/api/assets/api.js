// The node's JSON API: fetch with the API token on writes, errors carrying the node's text.


export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API token (the node's `.cookie`), for a node that requires one for spending, mining and
// peer changes. Kept in this tab's sessionStorage only, and sent only with writes.
const TOKEN_KEY = "powchain.apiToken";

export function apiToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setApiToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token cannot be kept, and writes will say so with a 401.
  }
}

/** Fetches JSON; a 4xx/5xx becomes an ApiError carrying the node's own `error` text. */
export async function api(path, { method = "GET", body } = {}) {
  const options = { method, headers: { Accept: "application/json" } };
  const token = apiToken();
  if (token && method !== "GET") options.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, `cannot reach the node (${error.message})`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    let message = json && typeof json.error === "string" ? json.error : `HTTP ${response.status}`;
    if (response.status === 401) message += " Enter the token under \"API token\" on the Wallet page.";
    throw new ApiError(response.status, message);
  }
  return json;
}
