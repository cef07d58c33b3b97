// The fleet view: the router's /console/fleet every few seconds, as cards, charts and a table.

import { $, ApiError, call, cell, clearBanner, showBanner } from "./api.js";
import { lineChart } from "./chart.js";

let timer = null;
let currentRun = 0; // a new run number ends the previous refresh loop

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

async function refreshFleet(run) {
  let view = null;
  try {
    view = await (await call("/console/fleet")).json();
    renderFleet(view);
  } catch (err) {
    showBanner(err);
  }
  if (run === currentRun) {
    const every = view ? view.interval_s * 1000 : 5000;
    timer = setTimeout(() => refreshFleet(run), Math.max(1000, every));
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
  const healthy = view.backends.filter((b) => b.healthy && !b.draining).length;
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

function renderBackends(backends) {
  const body = $("backends").tBodies[0];
  body.replaceChildren();
  for (const b of backends) {
    const row = body.insertRow();
    cell(row, b.pool ? `pool ${b.pool} (${b.url})` : b.url);
    const state = b.draining ? "draining" : b.healthy ? "healthy" : "down";
    cell(row, state, b.draining ? "" : b.healthy ? "ok" : "bad");
    cell(row, b.models.join(", "));
    cell(row, String(b.in_flight));
    cell(row, b.last_error || "");
  }
}

export function startFleet() {
  stopFleet();
  refreshFleet(currentRun);
}

export function stopFleet() {
  clearTimeout(timer);
  currentRun += 1;
}
