// The console's connection to the API: settings, authenticated calls, and the error banner.
// Every text that comes from the network is set with textContent, never parsed as HTML.

export const $ = (id) => document.getElementById(id);
const STORE = { base: "llmfleet.apiBase", key: "llmfleet.apiKey", gateway: "llmfleet.gatewayKey" };
// Where the API is and the keys for it: the keys live only in this tab's sessionStorage.
export const connection = { apiBase: "", key: "", gatewayKey: "" };

// --- connection -------------------------------------------------------------------

export async function loadConfig() {
  let config = {};
  try {
    const resp = await fetch("config.json", { cache: "no-store" });
    if (resp.ok) config = await resp.json();
  } catch (err) {
    // No config.json: the API is this page's own origin.
  }
  const saved = sessionStorage.getItem(STORE.base);
  connection.apiBase = saved !== null ? saved : config.api_base || "";
  connection.key = sessionStorage.getItem(STORE.key) || "";
  connection.gatewayKey = sessionStorage.getItem(STORE.gateway) || "";
  $("api-base").value = connection.apiBase;
  $("api-key").value = connection.key;
  $("gateway-key").value = connection.gatewayKey;
  summariseConnection();
  if (!connection.key) $("connection").open = true;
}

export function summariseConnection() {
  const where = connection.apiBase || "this site";
  $("connection-summary").textContent = `${where}, ${connection.key ? "key set" : "no key"}`;
}

function apiUrl(path) {
  return (connection.apiBase || "") + path;
}

function headers(extra = {}) {
  const out = { ...extra };
  if (connection.key) out.authorization = `Bearer ${connection.key}`;
  if (connection.gatewayKey) out["x-api-key"] = connection.gatewayKey;
  return out;
}

export function saveConnection() {
  connection.apiBase = $("api-base").value.trim().replace(/\/+$/, "");
  connection.key = $("api-key").value.trim();
  connection.gatewayKey = $("gateway-key").value.trim();
  sessionStorage.setItem(STORE.base, connection.apiBase);
  sessionStorage.setItem(STORE.key, connection.key);
  sessionStorage.setItem(STORE.gateway, connection.gatewayKey);
  summariseConnection();
}

// --- errors ---------------------------------------------------------------------

export class ApiError extends Error {
  constructor(kind, status, message, retryAfter) {
    super(message);
    this.kind = kind; // auth, rate, unavailable, request, server, network
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function kindOf(status) {
  if (status === 401 || status === 403) return "auth";
  if (status === 429) return "rate";
  if (status === 503 || status === 502 || status === 504) return "unavailable";
  if (status >= 400 && status < 500) return "request";
  return "server";
}

export async function errorFrom(resp) {
  let message = resp.statusText || "error";
  try {
    const body = await resp.json();
    message = (body.error && body.error.message) || body.message || message;
  } catch (err) {
    // Not JSON (a proxy's page): keep the status text.
  }
  return new ApiError(kindOf(resp.status), resp.status, message, resp.headers.get("retry-after"));
}

function describe(err) {
  if (!(err instanceof ApiError)) return `Unexpected error: ${err.message || err}`;
  const http = err.status ? ` (HTTP ${err.status})` : "";
  switch (err.kind) {
    case "auth":
      return `The API key was refused${http}: ${err.message}. Set the key under Connection.`;
    case "rate":
      return `Rate limited${http}: ${err.message}.` + (err.retryAfter ? ` Retry after ${err.retryAfter} s.` : "");
    case "unavailable":
      return `No backend can serve this right now${http}: ${err.message}.`;
    case "network":
      return `Cannot reach the API at ${connection.apiBase || window.location.origin}: ${err.message}. ` +
        "Is the router running, and does its CORS setting allow this page?";
    default:
      return `Request failed${http}: ${err.message}.`;
  }
}

export function showBanner(err) {
  const banner = $("banner");
  banner.textContent = describe(err);
  banner.dataset.kind = err.kind || "server";
  banner.hidden = false;
}

export function clearBanner() {
  $("banner").hidden = true;
  $("banner").textContent = "";
}

export async function call(path, options = {}) {
  let resp;
  try {
    resp = await fetch(apiUrl(path), { ...options, headers: headers(options.headers) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("network", 0, err.message || "network error");
  }
  if (!resp.ok) throw await errorFrom(resp);
  return resp;
}

// --- tables ------------------------------------------------------------------------

export function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}
