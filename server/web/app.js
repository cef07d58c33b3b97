// The llmfleet console: playground, fleet view and sizing explorer over the router's API.
// Plain JavaScript, no build step. Every text that comes from the network is set with
// textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = { base: "llmfleet.apiBase", key: "llmfleet.apiKey", gateway: "llmfleet.gatewayKey" };
const state = { apiBase: "", key: "", gatewayKey: "", fleetTimer: null, chat: null, planOptions: false };

// --- connection -------------------------------------------------------------------

async function loadConfig() {
  let config = {};
  try {
    const resp = await fetch("config.json", { cache: "no-store" });
    if (resp.ok) config = await resp.json();
  } catch (err) {
    // No config.json: the API is this page's own origin.
  }
  const saved = sessionStorage.getItem(STORE.base);
  state.apiBase = saved !== null ? saved : config.api_base || "";
  state.key = sessionStorage.getItem(STORE.key) || "";
  state.gatewayKey = sessionStorage.getItem(STORE.gateway) || "";
  $("api-base").value = state.apiBase;
  $("api-key").value = state.key;
  $("gateway-key").value = state.gatewayKey;
  summariseConnection();
  if (!state.key) $("connection").open = true;
}

function saveConnection(event) {
  event.preventDefault();
  state.apiBase = $("api-base").value.trim().replace(/\/+$/, "");
  state.key = $("api-key").value.trim();
  state.gatewayKey = $("gateway-key").value.trim();
  sessionStorage.setItem(STORE.base, state.apiBase);
  sessionStorage.setItem(STORE.key, state.key);
  sessionStorage.setItem(STORE.gateway, state.gatewayKey);
  summariseConnection();
  $("connection").open = false;
  clearBanner();
  state.planOptions = false;
  showTab(currentTab());
  loadModels();
}

function summariseConnection() {
  const where = state.apiBase || "this site";
  $("connection-summary").textContent = `${where}, ${state.key ? "key set" : "no key"}`;
}

function apiUrl(path) {
  return (state.apiBase || "") + path;
}

function headers(extra = {}) {
  const out = { ...extra };
  if (state.key) out.authorization = `Bearer ${state.key}`;
  if (state.gatewayKey) out["x-api-key"] = state.gatewayKey;
  return out;
}

// --- errors ---------------------------------------------------------------------

class ApiError extends Error {
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

async function errorFrom(resp) {
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
      return `Cannot reach the API at ${state.apiBase || window.location.origin}: ${err.message}. ` +
        "Is the router running, and does its CORS setting allow this page?";
    default:
      return `Request failed${http}: ${err.message}.`;
  }
}

function showBanner(err) {
  const banner = $("banner");
  banner.textContent = describe(err);
  banner.dataset.kind = err.kind || "server";
  banner.hidden = false;
}

function clearBanner() {
  $("banner").hidden = true;
  $("banner").textContent = "";
}

async function call(path, options = {}) {
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

// --- tabs -----------------------------------------------------------------------

const TABS = ["playground", "fleet", "sizing"];

function currentTab() {
  const name = window.location.hash.replace("#", "");
  return TABS.includes(name) ? name : "playground";
}

function showTab(name) {
  for (const tab of TABS) {
    $(tab).hidden = tab !== name;
    document.querySelector(`nav a[data-tab="${tab}"]`).classList.toggle("active", tab === name);
  }
  clearTimeout(state.fleetTimer);
  state.fleetTimer = null;
  if (name === "fleet") refreshFleet();
  if (name === "sizing" && !state.planOptions) loadPlanOptions();
}

// --- playground -------------------------------------------------------------------

async function loadModels() {
  if (!state.key) return;
  try {
    const body = await (await call("/v1/models")).json();
    const select = $("model");
    const chosen = select.value;
    select.replaceChildren();
    const names = body.data.map((m) => m.id);
    if (!names.includes("auto")) names.push("auto");
    for (const name of names) select.append(new Option(name, name));
    select.value = names.includes(chosen) ? chosen : names[0];
  } catch (err) {
    showBanner(err);
  }
}

function setStat(id, text) {
  $(id).textContent = text;
}

function resetStats() {
  for (const id of ["stat-model", "stat-ttft", "stat-tps", "stat-tokens", "stat-route"]) setStat(id, "-");
}

// One chat completion, streamed: tokens are shown as they arrive.
async function sendChat(event) {
  event.preventDefault();
  clearBanner();
  resetStats();
  $("output").textContent = "";
  const controller = new AbortController();
  state.chat = controller;
  $("send").disabled = true;
  $("stop").disabled = false;
  const body = {
    model: $("model").value,
    messages: [{ role: "user", content: $("prompt").value }],
    max_tokens: Number($("max-tokens").value) || 128,
    temperature: Number($("temperature").value),
    stream: true,
    stream_options: { include_usage: true },
  };
  const run = { started: performance.now(), first: null, last: null, chunks: 0, usage: null };
  try {
    const resp = await call("/v1/chat/completions", {
      method: "POST", body: JSON.stringify(body), signal: controller.signal,
      headers: { "content-type": "application/json" },
    });
    setStat("stat-model", resp.headers.get("x-llmfleet-model") || body.model);
    setStat("stat-route", resp.headers.get("x-llmfleet-route") || "asked for by name");
    await readStream(resp, run);
  } catch (err) {
    if (err.name !== "AbortError") showBanner(err);
  } finally {
    $("send").disabled = false;
    $("stop").disabled = true;
    state.chat = null;
    $("output").classList.remove("streaming");
  }
}

async function readStream(resp, run) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  $("output").classList.add("streaming");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) {
      if (line.startsWith("data:")) handleEvent(line.slice(5).trim(), run);
    }
  }
  showTiming(run);
}

function handleEvent(data, run) {
  if (!data || data === "[DONE]") return;
  const event = JSON.parse(data);
  if (event.error) throw new ApiError("server", 0, event.error.message || "stream failed");
  if (event.model) setStat("stat-model", event.model);
  if (event.usage) run.usage = event.usage;
  const text = event.choices && event.choices[0] && event.choices[0].delta && event.choices[0].delta.content;
  if (!text) return;
  const now = performance.now();
  if (run.first === null) {
    run.first = now;
    setStat("stat-ttft", `${Math.round(now - run.started)} ms`);
  }
  run.last = now;
  run.chunks += 1;
  $("output").textContent += text;
  showTiming(run);
}

function showTiming(run) {
  const tokens = run.usage ? run.usage.completion_tokens : run.chunks;
  if (run.first !== null && run.last > run.first && tokens > 1) {
    setStat("stat-tps", ((tokens - 1) / ((run.last - run.first) / 1000)).toFixed(1));
  }
  const prompt = run.usage ? run.usage.prompt_tokens : "?";
  setStat("stat-tokens", `${prompt} / ${tokens}`);
}

// --- fleet view -------------------------------------------------------------------

const CARDS = [
  ["requests_per_s", "requests/s", (v) => v.toFixed(2)],
  ["latency_p50_s", "latency p50", seconds],
  ["latency_p95_s", "latency p95", seconds],
  ["ttft_p50_s", "TTFT p50", seconds],
  ["ttft_p95_s", "TTFT p95", seconds],
  ["output_tokens_per_s", "output tokens/s", (v) => v.toFixed(1)],
  ["in_flight", "in flight", (v) => String(v)],
  ["gpu_utilization_pct", "GPU utilisation", (v) => `${v.toFixed(0)} %`],
  ["gpu_power_w", "GPU power", (v) => `${v.toFixed(0)} W`],
  ["cost_usd_per_hour", "cost", (v) => `$${v.toFixed(3)}/hr`],
  ["cost_usd_per_million_output_tokens", "per million tokens", (v) => `$${v.toFixed(2)}`],
];

function seconds(v) {
  return v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(2)} s`;
}

async function refreshFleet() {
  let view = null;
  try {
    view = await (await call("/console/fleet")).json();
    renderFleet(view);
  } catch (err) {
    showBanner(err);
  }
  if (currentTab() === "fleet") {
    const every = view ? view.interval_s * 1000 : 5000;
    state.fleetTimer = setTimeout(refreshFleet, Math.max(1000, every));
  }
}

function renderFleet(view) {
  const series = view.series;
  const latest = series.length ? series[series.length - 1] : {};
  const cards = $("fleet-cards");
  cards.replaceChildren();
  for (const [field, label, format] of CARDS) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.metric = field;
    const value = latest[field];
    card.append(Object.assign(document.createElement("span"), { textContent: label }));
    card.append(Object.assign(document.createElement("b"), {
      textContent: value === null || value === undefined ? "-" : format(value) }));
    cards.append(card);
  }
  const healthy = view.backends.filter((b) => b.healthy).length;
  if (!healthy) {
    showBanner(new ApiError("unavailable", 0, "no healthy backend: the router has no engine to send requests to"));
  } else if ($("banner").dataset.kind === "unavailable" || $("banner").dataset.kind === "network") {
    clearBanner();
  }
  const agent = view.agent;
  const where = agent.state === "ok" ? `${agent.instance_type || "unknown instance"}, ${agent.age_s} s ago`
    : agent.state === "not configured" ? "not configured: GPU and cost figures come from the agent" : agent.state;
  $("fleet-scope").textContent = `This router (${healthy} of ${view.backends.length} backends healthy) ` +
    `and its agent (${where}); rates over the last ${view.window_s} s, refreshed every ${view.interval_s} s.`;
  drawFleetCharts(series);
  renderBackends(view.backends);
}

function line(series, field, name) {
  return { name, values: series.map((p) => [p.t, p[field]]) };
}

function drawFleetCharts(s) {
  const { lineChart } = window.llmfleetCharts;
  lineChart($("chart-rps"), [line(s, "requests_per_s", "requests/s"), line(s, "error_rate", "error ratio")]);
  lineChart($("chart-latency"), [line(s, "latency_p50_s", "latency p50"), line(s, "latency_p95_s", "latency p95"),
    line(s, "ttft_p50_s", "TTFT p50"), line(s, "ttft_p95_s", "TTFT p95")]);
  lineChart($("chart-tokens"), [line(s, "output_tokens_per_s", "output"), line(s, "prompt_tokens_per_s", "prompt")]);
  lineChart($("chart-inflight"), [line(s, "in_flight", "in flight"), line(s, "queued", "queued")], { minMax: 1 });
  lineChart($("chart-gpu"), [line(s, "gpu_utilization_pct", "GPU %"), line(s, "gpu_power_w", "power W")],
    { empty: "no GPU readings (the agent reads NVML on GPU instances)" });
  lineChart($("chart-cost"), [line(s, "cost_usd_per_hour", "$/hr"),
    line(s, "cost_usd_per_million_output_tokens", "$/M tokens")], { empty: "no cost figures (the agent prices the instance)" });
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderBackends(backends) {
  const body = $("backends").tBodies[0];
  body.replaceChildren();
  for (const b of backends) {
    const row = body.insertRow();
    cell(row, b.url);
    cell(row, b.healthy ? "healthy" : "down", b.healthy ? "ok" : "bad");
    cell(row, b.models.join(", "));
    cell(row, String(b.in_flight));
    cell(row, b.last_error || "");
  }
}

// --- sizing explorer --------------------------------------------------------------

async function loadPlanOptions() {
  if (!state.key) return;
  try {
    const options = await (await call("/console/plan")).json();
    fill($("plan-model"), options.models, "Llama-3.1-8B");
    fill($("plan-market"), options.markets, "on-demand");
    const precision = $("plan-precision");
    precision.replaceChildren(new Option("any", ""));
    for (const p of options.precisions) precision.append(new Option(p, p));
    state.planOptions = true;
  } catch (err) {
    showBanner(err);
  }
}

function fill(select, values, preferred) {
  select.replaceChildren();
  for (const v of values) select.append(new Option(v, v));
  if (values.includes(preferred)) select.value = preferred;
}

function optionalNumber(id) {
  const text = $(id).value.trim();
  return text === "" || Number(text) === 0 ? null : Number(text);
}

async function runPlan(event) {
  event.preventDefault();
  clearBanner();
  const question = {
    model: $("plan-model").value,
    input_len: Number($("plan-input").value),
    output_len: Number($("plan-output").value),
    rate: optionalNumber("plan-rate"),
    ttft_ms: optionalNumber("plan-ttft"),
    tpot_ms: optionalNumber("plan-tpot"),
    market: $("plan-market").value,
    precision: $("plan-precision").value || null,
    kv_offload: $("plan-offload").checked,
  };
  $("plan-run").disabled = true;
  try {
    const result = await (await call("/console/plan", {
      method: "POST", body: JSON.stringify(question), headers: { "content-type": "application/json" },
    })).json();
    renderPlan(result);
  } catch (err) {
    showBanner(err);
  } finally {
    $("plan-run").disabled = false;
  }
}

function money(v, digits) {
  return v === null || v === undefined ? "-" : `$${v.toFixed(digits)}`;
}

function num(v, digits) {
  return v === null || v === undefined ? "-" : v.toFixed(digits);
}

function renderPlan(result) {
  $("plan-summary").textContent = `${result.searched} candidates searched in ` +
    `${(result.search_s * 1000).toFixed(0)} ms. ${result.recommendation}`;
  $("tfvars").textContent = result.tfvars || "# no candidate meets the SLO";
  const rows = result.candidates;
  const points = rows.map((c, i) => ({
    x: c.e2e_ms ? c.e2e_ms / 1000 : 0, y: c.feasible ? c.cost || 0 : 0, group: c.precision,
    highlight: i === 0 && c.feasible,
    label: `${c.instance_type} ${c.precision} TP${c.tensor_parallel}: ${num(c.cost, 3)}`,
  }));
  const frontier = rows.map((c, i) => (c.on_frontier ? i : -1)).filter((i) => i >= 0);
  $("plan-chart-caption").textContent = `Cost (${result.cost_unit}) against end-to-end latency (s); ` +
    "the line joins the candidates nothing beats on both, the ring is the recommendation";
  window.llmfleetCharts.scatterChart($("plan-chart"), points, {
    frontier, xLabel: "end-to-end latency per request (s)", yLabel: result.cost_unit });
  const body = $("plan-table").tBodies[0];
  body.replaceChildren();
  rows.forEach((c, i) => {
    const row = body.insertRow();
    row.className = c.feasible ? (i === 0 ? "best" : "") : "infeasible";
    for (const text of [String(i + 1), c.instance_type, c.precision, String(c.tensor_parallel),
      String(c.replicas_per_instance), String(c.concurrency || "-"), num(c.ttft_ms, 0), num(c.tpot_ms, 1),
      num(c.output_tok_s, 0), money(c.usd_hr, 3), money(c.usd_per_million_output_tokens, 2),
      String(c.instances)]) cell(row, text);
    cell(row, c.feasible ? "meets the SLO" : c.why_not);
  });
}

async function copyTfvars() {
  const text = $("tfvars").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-tfvars").textContent = "Copied";
  } catch (err) {
    // No clipboard outside a secure context: select the text for Ctrl-C instead.
    window.getSelection().selectAllChildren($("tfvars"));
    $("copy-tfvars").textContent = "Selected: press Ctrl-C";
  }
  setTimeout(() => { $("copy-tfvars").textContent = "Copy"; }, 2000);
}

// --- start ------------------------------------------------------------------------

async function start() {
  $("connection-form").addEventListener("submit", saveConnection);
  $("chat-form").addEventListener("submit", sendChat);
  $("stop").addEventListener("click", () => state.chat && state.chat.abort());
  $("plan-form").addEventListener("submit", runPlan);
  $("copy-tfvars").addEventListener("click", copyTfvars);
  window.addEventListener("hashchange", () => showTab(currentTab()));
  await loadConfig();
  showTab(currentTab());
  loadModels();
  document.body.dataset.ready = "true";
}

start();
