// The sizing explorer: the planner's ranking for a question, as a chart, a table and tfvars.

import { $, call, cell, clearBanner, connection, showBanner } from "./api.js";
import { scatterChart } from "./chart.js";

let optionsLoaded = false; // the catalogue, read once per key

async function loadPlanOptions() {
  if (!connection.key) return;
  try {
    const options = await (await call("/console/plan")).json();
    fill($("plan-model"), options.models, "Llama-3.1-8B");
    fill($("plan-market"), options.markets, "on-demand");
    const precision = $("plan-precision");
    precision.replaceChildren(new Option("any", ""));
    for (const p of options.precisions) precision.append(new Option(p, p));
    optionsLoaded = true;
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
  scatterChart($("plan-chart"), points, {
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

export function showSizing() {
  if (!optionsLoaded) loadPlanOptions();
}

export function forgetSizingOptions() {
  optionsLoaded = false;
}

export function initSizing() {
  $("plan-form").addEventListener("submit", runPlan);
  $("copy-tfvars").addEventListener("click", copyTfvars);
}
