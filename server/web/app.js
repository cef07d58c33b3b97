// The llmfleet console: playground, fleet view and sizing explorer over the router's API.
// Plain JavaScript modules, no build step; app.js wires the tabs and the connection form.

import { $, clearBanner, loadConfig, saveConnection } from "./api.js";
import { startFleet, stopFleet } from "./fleet.js";
import { initPlayground, loadModels } from "./playground.js";
import { forgetSizingOptions, initSizing, showSizing } from "./sizing.js";

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
  if (name === "fleet") startFleet();
  else stopFleet();
  if (name === "sizing") showSizing();
}

function onConnectionSaved(event) {
  event.preventDefault();
  saveConnection();
  $("connection").open = false;
  clearBanner();
  forgetSizingOptions();
  showTab(currentTab());
  loadModels();
}

async function start() {
  $("connection-form").addEventListener("submit", onConnectionSaved);
  initPlayground();
  initSizing();
  window.addEventListener("hashchange", () => showTab(currentTab()));
  await loadConfig();
  showTab(currentTab());
  loadModels();
  document.body.dataset.ready = "true";
}

start();
