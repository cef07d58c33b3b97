// The playground: one chat completion at a time, streamed, with what the router chose and how
// fast the tokens came.

import { $, ApiError, call, clearBanner, connection, showBanner } from "./api.js";

let chatInFlight = null; // the AbortController of the chat being streamed

export async function loadModels() {
  if (!connection.key) return;
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
  chatInFlight = controller;
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
    chatInFlight = null;
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
  // Over the whole request, as the user waited for it: a browser busy elsewhere may read
  // a burst of tokens at once, which makes a first-to-last-token rate meaningless.
  if (run.last !== null && run.last > run.started) {
    setStat("stat-tps", (tokens / ((run.last - run.started) / 1000)).toFixed(1));
  }
  const prompt = run.usage ? run.usage.prompt_tokens : "?";
  setStat("stat-tokens", `${prompt} / ${tokens}`);
}

export function initPlayground() {
  $("chat-form").addEventListener("submit", sendChat);
  $("stop").addEventListener("click", () => chatInFlight && chatInFlight.abort());
}
