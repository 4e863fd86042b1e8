// powchain dashboard: a small single-page app over the node's JSON API.
//
//   location.hash ──▶ route ──▶ view (fetches /status, /headers, /blocks/{id}, /tx/{id}, ...)
//   EventSource /events ──▶ handleNodeEvent ──▶ live parts of the current view refresh
//
// Plain ES modules, no framework, no build step. Every piece of chain data goes into the
// page as text nodes (never as HTML): block notes and addresses come from strangers.
//
// This file starts the page: live updates, routing and search. The views are in views.js
// (chain, pool, peers), wallet.js and charts.js; they build on dom.js, format.js, api.js
// (the node's JSON API) and state.js (what the page keeps).

import { ApiError, api } from "./api.js";
import { chartsView } from "./charts.js";
import { h, heading } from "./dom.js";
import { refreshStatus, state } from "./state.js";
import { addressView, blockView, blocksView, overviewView, peersView, poolView, transactionView } from "./views.js";
import { walletView } from "./wallet.js";

const STATUS_POLL_MS = 5_000;
const REFRESH_DEBOUNCE_MS = 120;
const MAX_ACTIVITY = 30;
const MAX_REORGS = 20;

const main = document.getElementById("main");
const liveIndicator = document.getElementById("live");
const searchForm = document.getElementById("search");
const searchInput = document.getElementById("search-input");
const searchMessage = document.getElementById("search-message");

// ---------------------------------------------------------------------------------------
// Live updates: /events

let refreshTimer = null;
let refreshRunning = false;
let refreshAgain = false;

function scheduleRefresh() {
  if (refreshTimer !== null) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    if (refreshRunning) {
      refreshAgain = true;
      return;
    }
    refreshRunning = true;
    try {
      await refreshStatus();
      if (currentView?.refresh) await currentView.refresh();
    } catch (error) {
      console.warn("refresh failed:", error.message);
    } finally {
      refreshRunning = false;
      if (refreshAgain) {
        refreshAgain = false;
        scheduleRefresh();
      }
    }
  }, REFRESH_DEBOUNCE_MS);
}

function addActivity(text, href) {
  state.activity.unshift({ time: new Date(), text, href });
  state.activity.length = Math.min(state.activity.length, MAX_ACTIVITY);
}

/**
 * Takes one event from the node (the JSON of an /events message) and updates the page.
 * Exported so tests can feed it events a single node cannot produce (a reorganisation).
 */
export function handleNodeEvent(event) {
  switch (event.type) {
    case "ready":
      break;
    case "blockConnected":
      state.pendingConnected.push({ hash: event.hash, height: event.height });
      state.freshBlocks.add(event.hash);
      if (state.freshBlocks.size > MAX_ACTIVITY) state.freshBlocks.delete(state.freshBlocks.values().next().value);
      addActivity(`Block #${event.height} connected`, `#/block/${event.hash}`);
      break;
    case "blockDisconnected":
      state.pendingDisconnected.push({ hash: event.hash, height: event.height });
      addActivity(`Block #${event.height} disconnected`, `#/block/${event.hash}`);
      break;
    case "tipChanged":
      if (event.reorgDepth > 0) {
        const disconnected = state.pendingDisconnected.slice().sort((a, b) => a.height - b.height);
        const connected = state.pendingConnected.slice().sort((a, b) => a.height - b.height);
        const lowest = disconnected.length ? disconnected[0].height : event.height - event.reorgDepth + 1;
        state.reorgs.unshift({
          time: new Date(),
          depth: event.reorgDepth,
          tipHeight: event.height,
          tipHash: event.hash,
          forkHeight: lowest - 1,
          disconnected,
          connected: connected.filter((block) => block.height >= lowest),
        });
        state.reorgs.length = Math.min(state.reorgs.length, MAX_REORGS);
        addActivity(`Reorganisation: ${event.reorgDepth} block(s) replaced, new tip #${event.height}`, `#/block/${event.hash}`);
      }
      state.pendingConnected = [];
      state.pendingDisconnected = [];
      break;
    case "transactionAccepted":
      addActivity("Transaction entered the pool", `#/tx/${event.txid}`);
      break;
    case "resync":
      addActivity(`Missed ${event.missed} event(s); reloaded`, null);
      break;
    default:
      return;
  }
  scheduleRefresh();
}

const EVENT_TYPES = ["ready", "blockConnected", "blockDisconnected", "tipChanged", "transactionAccepted", "resync"];

function setLive(stateName, text) {
  liveIndicator.dataset.state = stateName;
  liveIndicator.textContent = text;
}

function connectEvents() {
  if (typeof EventSource === "undefined") {
    setLive("off", "No live updates (this browser has no EventSource)");
    return;
  }
  const source = new EventSource("/events");
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (type === "ready") setLive("live", "Live");
      handleNodeEvent(event);
    });
  }
  source.addEventListener("error", () => {
    // EventSource reconnects by itself; show it until `ready` arrives again.
    setLive("reconnecting", "Reconnecting…");
  });
}


// Routing (#/path?query)

const ROUTES = [
  [/^\/$/, "overview", () => overviewView()],
  [/^\/blocks$/, "blocks", (match, query) => blocksView(query)],
  [/^\/block\/([^/]+)$/, "blocks", (match) => blockView(decodeURIComponent(match[1]))],
  [/^\/tx\/([^/]+)$/, "blocks", (match) => transactionView(decodeURIComponent(match[1]))],
  [/^\/address\/([^/]+)$/, null, (match) => addressView(decodeURIComponent(match[1]))],
  [/^\/pool$/, "pool", () => poolView()],
  [/^\/peers$/, "peers", () => peersView()],
  [/^\/wallet$/, "wallet", () => walletView()],
  [/^\/charts$/, "charts", (match, query) => chartsView(query)],
];

let currentView = null;
let generation = 0;

function parseHash() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, queryText = ""] = hash.split("?", 2);
  return { path, query: new URLSearchParams(queryText) };
}

async function render({ focus }) {
  const { path, query } = parseHash();
  const mine = ++generation;
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll(".sections a")) {
    if (route && link.dataset.section === route[1]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.setAttribute("aria-busy", "true");
  let view;
  try {
    if (!route) throw new ApiError(404, `There is no page at ${path}.`);
    view = await route[2](route[0].exec(path), query);
  } catch (error) {
    view = {
      title: "Not available",
      element: h("div", {}, heading(error.status === 404 ? "Not found" : "Could not load this page"),
        h("p", { class: "message error", role: "alert" }, error.message),
        h("p", {}, h("a", { href: "#/" }, "Back to the overview"))),
    };
  }
  if (mine !== generation) return; // The person has moved on.
  currentView = view;
  main.replaceChildren(view.element);
  main.removeAttribute("aria-busy");
  document.title = `${view.title} · powchain`;
  if (focus) main.querySelector("h1")?.focus();
}

// ---------------------------------------------------------------------------------------
// Search: a height, a block hash or transaction id (64 hex digits), or an address.

/** Shows what a search found and clears the box for the next one. */
function go(hash) {
  searchInput.value = "";
  if (location.hash === hash) render({ focus: true });
  else location.hash = hash;
}

async function search(text) {
  const query = text.trim();
  searchMessage.textContent = "";
  if (!query) return;
  if (/^\d+$/.test(query)) {
    go(`#/block/${query}`);
    return;
  }
  if (/^[0-9a-fA-F]{64}$/.test(query)) {
    const hash = query.toLowerCase();
    try {
      await api(`/blocks/${hash}`);
      go(`#/block/${hash}`);
      return;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    try {
      await api(`/tx/${hash}`);
      go(`#/tx/${hash}`);
      return;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
    searchMessage.textContent = `No block or transaction has the hash ${hash}.`;
    return;
  }
  try {
    await api(`/address/${encodeURIComponent(query)}?limit=1`);
    go(`#/address/${query}`);
  } catch (error) {
    searchMessage.textContent = `Nothing found for “${query}”: not a height, a 64-digit hash, or an address (${error.message}).`;
  }
}

searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  search(searchInput.value).catch((error) => {
    searchMessage.textContent = error.message;
  });
});

document.querySelector("[data-skip]").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", () => {
  if (location.hash === "" || location.hash.startsWith("#/")) render({ focus: true });
});

// Hashrate, peers and sync change without events: poll while the page is visible.
setInterval(() => {
  if (document.visibilityState !== "visible") return;
  refreshStatus()
    .then(() => (currentView && (currentView.poll || currentView.title === "Overview") ? currentView.refresh?.() : null))
    .catch(() => {});
}, STATUS_POLL_MS);

refreshStatus().catch(() => {});
connectEvents();
render({ focus: false });
