// powchain dashboard: a small single-page app over the node's JSON API.
//
//   location.hash ──▶ route ──▶ view (fetches /status, /headers, /blocks/{id}, /tx/{id}, ...)
//   EventSource /events ──▶ handleNodeEvent ──▶ live parts of the current view refresh
//
// Plain ES module, no framework, no build step. Every piece of chain data goes into the
// page as text nodes (never as HTML): block notes and addresses come from strangers.

const UNITS_PER_COIN = 100_000_000n;
const STATUS_POLL_MS = 5_000;
const REFRESH_DEBOUNCE_MS = 120;
const MAX_ACTIVITY = 30;
const MAX_REORGS = 20;
const MAX_WALLET_ADDRESSES_SHOWN = 20;
const SVG_NS = "http://www.w3.org/2000/svg";

const main = document.getElementById("main");
const liveIndicator = document.getElementById("live");
const networkBadge = document.getElementById("network");
const searchForm = document.getElementById("search");
const searchInput = document.getElementById("search-input");
const searchMessage = document.getElementById("search-message");

// State kept since the page loaded.
const state = {
  status: null,
  activity: [], // { time, text, href }
  reorgs: [], // { time, depth, tipHeight, tipHash, forkHeight, disconnected: [], connected: [] }
  pendingDisconnected: [],
  pendingConnected: [],
  freshBlocks: new Set(),
};

// ---------------------------------------------------------------------------------------
// DOM helpers

/** Builds an element: h("a", { href: "#/" }, "text", child). Strings become text nodes. */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  appendChildren(element, children);
  return element;
}

/** Builds an SVG element. */
function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  appendChildren(element, children);
  return element;
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function appendChildren(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// ---------------------------------------------------------------------------------------
// Formatting

/** Units (integer) as coins, without trailing zeros: 150000000 -> "1.5". */
function formatCoins(units) {
  const value = BigInt(units);
  const negative = value < 0n;
  const absolute = negative ? -value : value;
  const whole = absolute / UNITS_PER_COIN;
  const fraction = (absolute % UNITS_PER_COIN).toString().padStart(8, "0").replace(/0+$/, "");
  const wholeText = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${wholeText}${fraction ? "." + fraction : ""}`;
}

function coins(units) {
  return h("span", { class: "num", title: `${units} units` }, `${formatCoins(units)} coins`);
}

/** "1.5" (coins) -> 150000000n units; throws with a readable message. */
export function parseCoins(text) {
  const trimmed = text.trim();
  const match = /^(\d*)(?:\.(\d*))?$/.exec(trimmed);
  if (!trimmed || !match || (match[1] === "" && (match[2] ?? "") === "")) {
    throw new Error("Enter the amount as a number of coins, for example 1.5.");
  }
  const fraction = match[2] ?? "";
  if (fraction.length > 8) {
    throw new Error("An amount has at most 8 decimal places (1 unit = 0.00000001 coins).");
  }
  return BigInt(match[1] || "0") * UNITS_PER_COIN + BigInt(fraction.padEnd(8, "0") || "0");
}

function formatNumber(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

function formatHashrate(hashesPerSecond) {
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s"];
  let value = hashesPerSecond;
  let index = 0;
  while (value >= 1000 && index < units.length - 1) {
    value /= 1000;
    index += 1;
  }
  return `${formatNumber(value, value < 10 ? 2 : 1)} ${units[index]}`;
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${formatNumber(bytes / 1024, 1)} kB`;
  return `${formatNumber(bytes / 1024 / 1024, 1)} MB`;
}

function formatDuration(milliseconds) {
  if (Math.abs(milliseconds) < 1000) return `${Math.round(milliseconds)} ms`;
  const seconds = milliseconds / 1000;
  if (Math.abs(seconds) < 60) return `${formatNumber(seconds, 1)} s`;
  if (Math.abs(seconds) < 3600) return `${formatNumber(seconds / 60, 1)} min`;
  if (Math.abs(seconds) < 86400) return `${formatNumber(seconds / 3600, 1)} h`;
  return `${formatNumber(seconds / 86400, 1)} days`;
}

function timeAgo(timestampMs) {
  const age = Date.now() - timestampMs;
  if (age < -1500) return `in ${formatDuration(-age)}`;
  if (age < 1500) return "just now";
  return `${formatDuration(age)} ago`;
}

/** A <time> element: relative text, the exact time in its tooltip. */
function when(timestampMs) {
  const date = new Date(timestampMs);
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString() }, timeAgo(timestampMs));
}

function clock(date) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

function shortHash(hash) {
  return hash.length > 20 ? `${hash.slice(0, 10)}…${hash.slice(-8)}` : hash;
}

// Shortened hashes stay on one line; full ones may wrap.
function blockLink(hashOrHeight, text) {
  return h("a", { href: `#/block/${hashOrHeight}`, class: text === undefined ? "hash nowrap" : "hash", title: String(hashOrHeight) }, text ?? shortHash(String(hashOrHeight)));
}

function txLink(txid, text) {
  return h("a", { href: `#/tx/${txid}`, class: text === undefined ? "hash nowrap" : "hash", title: txid }, text ?? shortHash(txid));
}

function addressLink(address, text) {
  return h("a", { href: `#/address/${address}`, class: "hash", title: address }, text ?? address);
}

function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.filter(Boolean).map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

function table(caption, headings, rows, emptyText) {
  if (rows.length === 0) return h("p", { class: "empty" }, emptyText);
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headings.map(([text, numeric]) => h("th", { scope: "col", class: numeric ? "num" : null }, text)))),
      h("tbody", {}, rows)));
}

function cell(content, numeric = false) {
  return h("td", { class: numeric ? "num" : null }, content);
}

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API token (the node's `.cookie`), for a node that requires one for spending, mining and
// peer changes. Kept in this tab's sessionStorage only, and sent only with writes.
const TOKEN_KEY = "powchain.apiToken";

function apiToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function setApiToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token cannot be kept, and writes will say so with a 401.
  }
}

/** Fetches JSON; a 4xx/5xx becomes an ApiError carrying the node's own `error` text. */
async function api(path, { method = "GET", body } = {}) {
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

// ---------------------------------------------------------------------------------------
// Status (masthead badge and the overview)

async function refreshStatus() {
  const status = await api("/status");
  state.status = status;
  networkBadge.textContent = status.network;
  return status;
}

// ---------------------------------------------------------------------------------------
// Views. Each returns { title, element, refresh? }; refresh updates the live parts in place
// (never the parts a person may be typing into).

function heading(text, sub) {
  return h("h1", { tabindex: "-1" }, text, sub ? h("span", { class: "sub" }, sub) : null);
}

function stat(name, key, value, extra) {
  return h("div", { class: "stat" }, h("dt", {}, name), h("dd", { "data-stat": key }, value, extra ? h("small", {}, extra) : null));
}

/** Blocks as table rows; `compact` leaves out size and difficulty (for the overview). */
function headersTable(headers, caption, compact = false) {
  const rows = headers.map((block) =>
    // A block that arrived live is highlighted the first time it is drawn.
    h("tr", { class: state.freshBlocks.delete(block.hash) ? "fresh" : null, "data-height": block.height },
      cell(blockLink(block.hash, `#${block.height}`)),
      cell(blockLink(block.hash)),
      cell(when(block.timestamp)),
      cell(block.transactionCount, true),
      compact ? null : cell(formatBytes(block.size), true),
      compact ? null : cell(formatNumber(block.difficulty, 3), true)));
  const headings = [["Height"], ["Hash"], ["Time"], ["Txs", true]];
  if (!compact) headings.push(["Size", true], ["Difficulty", true]);
  return table(caption, headings, rows, "No blocks.");
}

function activityList() {
  if (state.activity.length === 0) {
    return h("p", { class: "empty" }, "Nothing has happened since this page was opened. New blocks and transactions appear here as they arrive.");
  }
  return h("ul", { class: "activity", "aria-label": "Recent activity" },
    state.activity.map((item) => h("li", {},
      h("time", { datetime: item.time.toISOString() }, clock(item.time)),
      item.href ? h("a", { href: item.href }, item.text) : item.text)));
}

async function overviewView() {
  const statsList = h("dl", { class: "stats", "aria-label": "Chain status" });
  const latest = h("div");
  const activity = h("div");
  const reorgNote = h("p", { class: "muted" });
  const element = h("div", {},
    heading("Overview"),
    statsList,
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "latest-heading" },
        h("h2", { id: "latest-heading" }, "Latest blocks"), latest,
        h("p", { class: "pager" }, h("a", { href: "#/blocks" }, "All blocks →"))),
      h("section", { class: "panel", "aria-labelledby": "activity-heading" },
        h("h2", { id: "activity-heading" }, "Live activity"), activity, reorgNote)));
  const refresh = async () => {
    const [status, page] = await Promise.all([refreshStatus(), api("/headers?limit=8")]);
    const sync = status.sync;
    statsList.replaceChildren(
      stat("Network", "network", status.network),
      stat("Height", "height", String(status.height)),
      stat("Tip", "tip", blockLink(status.tip, shortHash(status.tip)), when(status.tipTime)),
      stat("Difficulty", "difficulty", formatNumber(status.difficulty, 4), `bits ${status.bits}`),
      stat("Hashrate", "hashrate", formatHashrate(status.hashrate), status.mining ? `mining on ${status.minerThreads} thread(s)` : "not mining continuously"),
      stat("Peers", "peers", h("a", { href: "#/peers" }, String(status.peers))),
      stat("Pool", "pool", h("a", { href: "#/pool" }, `${status.mempool.transactions} tx`), formatBytes(status.mempool.bytes)),
      stat("Sync", "sync", sync.syncing ? `${formatNumber(sync.progress * 100, 1)} %` : "In sync",
        h("progress", { max: "1", value: String(sync.progress), "aria-label": "Sync progress" })));
    latest.replaceChildren(headersTable(page.headers, null, true));
    activity.replaceChildren(activityList());
    reorgNote.textContent = state.reorgs.length
      ? `${state.reorgs.length} reorganisation(s) seen since this page was opened; see Charts.`
      : "No reorganisations seen since this page was opened.";
  };
  await refresh();
  return { title: "Overview", element, refresh };
}

async function blocksView(query) {
  const limit = 25;
  const before = query.get("before");
  if (before !== null && !/^\d+$/.test(before)) throw new ApiError(400, `"before" must be a height, got "${before}"`);
  const body = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages of blocks" });
  const element = h("div", {}, heading("Blocks", "Main chain, newest first"), h("section", { class: "panel" }, body, pager));
  const refresh = async () => {
    const path = before === null ? `/headers?limit=${limit}` : `/headers?limit=${limit}&before=${before}`;
    const page = await api(path);
    const first = page.headers[0];
    const last = page.headers[page.headers.length - 1];
    const caption = first ? `Blocks #${last.height} to #${first.height} of ${formatNumber(page.tipHeight + 1, 0)}` : null;
    body.replaceChildren(headersTable(page.headers, caption));
    const links = [];
    if (before !== null) {
      links.push(h("a", { href: "#/blocks" }, "« Newest"));
      const newer = Number(before) + limit;
      links.push(h("a", { href: newer > page.tipHeight ? "#/blocks" : `#/blocks?before=${newer}` }, "‹ Newer"));
    }
    if (page.nextBefore !== null && page.nextBefore !== undefined) {
      links.push(h("a", { href: `#/blocks?before=${page.nextBefore}`, rel: "next" }, "Older ›"));
    }
    pager.replaceChildren(...links);
  };
  await refresh();
  // Only the newest page follows the chain; older pages stay where they are.
  return { title: "Blocks", element, refresh: before === null ? refresh : null };
}

function transactionsOfBlock(block) {
  const rows = block.data.map((transaction, index) =>
    h("tr", {},
      cell(String(index), true),
      cell(txLink(transaction.txid)),
      cell(transaction.coinbase ? h("span", { class: "badge" }, "coinbase") : `${transaction.inputs.length} input(s)`),
      cell(String(transaction.outputs.length), true),
      cell(coins(transaction.outputTotal), true),
      cell(formatBytes(transaction.size), true)));
  return table(null, [["#", true], ["Transaction"], ["Inputs"], ["Outputs", true], ["Output total", true], ["Size", true]], rows, "No transactions.");
}

async function blockView(id) {
  const element = h("div");
  const refresh = async () => {
    const block = await api(`/blocks/${encodeURIComponent(id)}`);
    const coinbase = block.data[0]?.coinbase;
    const onMainChain = block.confirmations !== null && block.confirmations !== undefined;
    element.replaceChildren(
      heading(`Block #${block.height}`, h("span", { class: "hash" }, block.hash)),
      h("section", { class: "panel", "aria-labelledby": "header-heading" },
        h("h2", { id: "header-heading" }, "Header"),
        fields([
          ["Height", String(block.height)],
          ["Hash", h("span", { class: "hash" }, block.hash)],
          ["Previous block", block.height === 0 ? "none (genesis)" : blockLink(block.lastHash, block.lastHash)],
          onMainChain && block.confirmations > 1 ? ["Next block", blockLink(block.height + 1, `#${block.height + 1}`)] : null,
          ["Confirmations", onMainChain ? String(block.confirmations) : h("span", { class: "badge bad" }, "not on the main chain")],
          ["Time", [new Date(block.timestamp).toLocaleString(), " (", when(block.timestamp), ")"]],
          ["Difficulty", formatNumber(block.difficulty, 6)],
          ["Bits", h("code", {}, block.bits)],
          ["Nonce", String(block.nonce)],
          ["Merkle root", h("span", { class: "hash" }, block.merkleRoot)],
          ["Version", String(block.version)],
          ["Size", `${formatBytes(block.size)} (${block.size} bytes)`],
          ["Transactions", String(block.transactionCount)],
          coinbase && coinbase.data ? ["Note", h("q", {}, coinbase.data)] : null,
        ])),
      h("section", { class: "panel", "aria-labelledby": "transactions-heading" },
        h("h2", { id: "transactions-heading" }, "Transactions"), transactionsOfBlock(block)));
    return block;
  };
  const block = await refresh();
  return { title: `Block #${block.height}`, element, refresh };
}

async function transactionView(txid) {
  const element = h("div");
  const refresh = async () => {
    const transaction = await api(`/tx/${encodeURIComponent(txid)}`);
    const inputRows = transaction.inputs.map((input) =>
      h("tr", {},
        cell([txLink(input.txid), h("span", { class: "muted" }, `:${input.vout}`)]),
        cell(input.address ? addressLink(input.address) : h("span", { class: "muted" }, "unknown")),
        cell(input.amount !== undefined ? coins(input.amount) : "–", true)));
    const outputRows = transaction.outputs.map((output) =>
      h("tr", {},
        cell(String(output.n), true),
        cell(addressLink(output.address)),
        cell(coins(output.amount), true)));
    const status = transaction.status === "pool"
      ? h("span", { class: "badge" }, "in the pool, unconfirmed")
      : h("span", { class: "badge good" }, "confirmed");
    element.replaceChildren(
      heading("Transaction", h("span", { class: "hash" }, transaction.txid)),
      h("section", { class: "panel", "aria-labelledby": "summary-heading" },
        h("h2", { id: "summary-heading" }, "Summary"),
        fields([
          ["Status", status],
          ["Confirmations", String(transaction.confirmations)],
          transaction.blockHash ? ["Block", blockLink(transaction.blockHash, `#${transaction.blockHeight} (${shortHash(transaction.blockHash)})`)] : null,
          ["Fee", transaction.fee === null || transaction.fee === undefined ? "none (coinbase)" : coins(transaction.fee)],
          transaction.fee ? ["Fee rate", `${formatNumber(transaction.fee / transaction.size, 2)} units/byte`] : null,
          ["Output total", coins(transaction.outputTotal)],
          ["Size", `${transaction.size} bytes`],
          ["Version", String(transaction.version)],
          transaction.coinbase ? ["Coinbase", `height ${transaction.coinbase.height}${transaction.coinbase.data ? `, note “${transaction.coinbase.data}”` : ""}`] : null,
        ])),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "inputs-heading" },
          h("h2", { id: "inputs-heading" }, "Inputs"),
          transaction.coinbase
            ? h("p", { class: "muted" }, "A coinbase has no inputs: it creates the block's subsidy and collects its fees.")
            : table(null, [["Spends"], ["Address"], ["Amount", true]], inputRows, "No inputs.")),
        h("section", { class: "panel", "aria-labelledby": "outputs-heading" },
          h("h2", { id: "outputs-heading" }, "Outputs"),
          table(null, [["#", true], ["Address"], ["Amount", true]], outputRows, "No outputs."))),
      h("details", { class: "panel" }, h("summary", {}, "Raw transaction (hex)"), h("pre", {}, transaction.hex)));
  };
  await refresh();
  return { title: "Transaction", element, refresh };
}

async function addressView(address) {
  const element = h("div");
  const refresh = async () => {
    const info = await api(`/address/${encodeURIComponent(address)}`);
    const utxoRows = info.utxos.map((utxo) =>
      h("tr", {},
        cell([txLink(utxo.txid), h("span", { class: "muted" }, `:${utxo.vout}`)]),
        cell(blockLink(utxo.height, `#${utxo.height}`)),
        cell(utxo.coinbase ? (utxo.mature ? "coinbase" : "coinbase, immature") : "payment"),
        cell(coins(utxo.amount), true)));
    const historyRows = info.history.map((entry) =>
      h("tr", {}, cell(txLink(entry.txid)), cell(blockLink(entry.height, `#${entry.height}`))));
    element.replaceChildren(
      heading("Address", h("span", { class: "hash" }, info.address)),
      h("section", { class: "panel", "aria-labelledby": "balance-heading" },
        h("h2", { id: "balance-heading" }, "Balance"),
        fields([
          ["Balance", h("span", { "data-field": "address-balance" }, coins(info.balance))],
          ["Unspent outputs", String(info.utxoCount)],
          ["Pending", info.pending.length ? info.pending.map((txid) => [txLink(txid), " "]) : "none"],
        ])),
      h("div", { class: "grid" },
        h("section", { class: "panel", "aria-labelledby": "utxos-heading" },
          h("h2", { id: "utxos-heading" }, "Unspent outputs"),
          table(info.utxoCount > info.utxos.length ? `The first ${info.utxos.length} of ${info.utxoCount}` : null,
            [["Output"], ["Block"], ["Kind"], ["Amount", true]], utxoRows, "No unspent outputs.")),
        h("section", { class: "panel", "aria-labelledby": "history-heading" },
          h("h2", { id: "history-heading" }, "History"),
          table("Newest first", [["Transaction"], ["Block"]], historyRows, "No confirmed transactions."))));
  };
  await refresh();
  return { title: "Address", element, refresh };
}

async function poolView() {
  const body = h("div");
  const element = h("div", {}, heading("Pool", "Unconfirmed transactions, best fee rate first"), h("section", { class: "panel" }, body));
  const refresh = async () => {
    const pool = await api("/transactions");
    const rows = pool.map((entry) =>
      h("tr", { "data-txid": entry.txid },
        cell(txLink(entry.txid)),
        cell(coins(entry.fee), true),
        cell(`${formatNumber(entry.feeRate, 2)} units/B`, true),
        cell(`${entry.size} B`, true),
        cell(coins(entry.outputTotal), true),
        cell(when(entry.receivedAt))));
    const totalBytes = pool.reduce((sum, entry) => sum + entry.size, 0);
    body.replaceChildren(table(`${pool.length} transaction(s), ${formatBytes(totalBytes)}`,
      [["Transaction"], ["Fee", true], ["Fee rate", true], ["Size", true], ["Output total", true], ["Received"]],
      rows, "The pool is empty: every transaction the node knows is confirmed."));
  };
  await refresh();
  return { title: "Pool", element, refresh };
}

async function peersView() {
  const body = h("div");
  const message = h("p", { class: "message", role: "alert" });
  const input = h("input", { id: "peer-url", name: "url", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "ws://127.0.0.1:5002" });
  const button = h("button", { type: "submit" }, "Connect");
  const form = h("form", { class: "form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "peer-url" }, "Peer address"), input,
      h("span", { class: "hint" }, "A ws://host:port address; the node keeps reconnecting to it.")),
    h("div", { class: "actions" }, button), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    message.className = "message";
    message.textContent = "";
    try {
      const answer = await api("/peers", { method: "POST", body: { url: input.value } });
      message.className = "message ok";
      message.textContent = `Connecting to ${answer.url}.`;
      await refresh();
    } catch (error) {
      message.className = "message error";
      message.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
  const element = h("div", {}, heading("Peers"),
    h("section", { class: "panel" }, body),
    h("section", { class: "panel", "aria-labelledby": "add-peer-heading" }, h("h2", { id: "add-peer-heading" }, "Connect to a peer"), form));
  const refresh = async () => {
    const peers = await api("/peers");
    const rows = peers.map((peer) =>
      h("tr", {},
        cell(h("span", { class: "hash" }, peer.url)),
        cell(h("span", { class: peer.direction === "outbound" ? "badge" : "badge muted" }, peer.direction)),
        cell(String(peer.bestHeight), true),
        cell([new Date(peer.connectedSince).toLocaleString(), " (", when(peer.connectedSince), ")"])));
    body.replaceChildren(table(`${peers.length} connected`, [["Peer"], ["Direction"], ["Best height", true], ["Connected since"]], rows,
      "No peers connected. This node works alone until it connects to another one (PEERS, --peers or the form below)."));
  };
  await refresh();
  return { title: "Peers", element, refresh, poll: true };
}

async function walletView() {
  const [key, status] = await Promise.all([api("/public-key"), state.status ? Promise.resolve(state.status) : refreshStatus()]);
  const copyMessage = h("span", { class: "muted", role: "status", "aria-live": "polite" });
  const addressCode = h("code", { id: "wallet-address" }, key.address);
  const copyButton = h("button", { type: "button", class: "secondary" }, "Copy address");
  copyButton.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(key.address);
      copyMessage.textContent = "Copied to the clipboard.";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(addressCode);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copyMessage.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  });

  const balanceFields = h("div");
  const addressesBody = h("div");
  const newAddressButton = h("button", { type: "button", class: "secondary" }, "New receive address");
  const newAddressMessage = h("p", { class: "message", role: "alert" });
  newAddressButton.addEventListener("click", async () => {
    newAddressButton.disabled = true;
    try {
      const answer = await api("/wallet/addresses", { method: "POST" });
      newAddressMessage.className = "message ok";
      newAddressMessage.replaceChildren("New address: ", addressLink(answer.address));
      await refresh();
    } catch (error) {
      newAddressMessage.className = "message error";
      newAddressMessage.textContent = error.message;
    } finally {
      newAddressButton.disabled = false;
    }
  });

  // The send form. No browser-side checks beyond reading the amount: the node's own error
  // text is what a person sees, so the dashboard can never disagree with the node.
  const recipient = h("input", { id: "send-recipient", name: "recipient", type: "text", autocomplete: "off", spellcheck: "false", "aria-describedby": "send-recipient-hint" });
  const amount = h("input", { id: "send-amount", name: "amount", type: "text", inputmode: "decimal", autocomplete: "off", "aria-describedby": "send-amount-hint" });
  const feeRate = h("input", { id: "send-fee-rate", name: "feeRate", type: "text", inputmode: "numeric", autocomplete: "off", placeholder: "node default", "aria-describedby": "send-fee-rate-hint" });
  const sendButton = h("button", { type: "submit" }, "Send");
  const sendMessage = h("p", { id: "send-message", class: "message", role: "alert" });
  const sendForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "send-heading" },
    h("fieldset", {},
      h("legend", { id: "send-heading" }, "Send coins"),
      h("div", { class: "field" }, h("label", { for: "send-recipient" }, "Recipient address"), recipient,
        h("span", { class: "hint", id: "send-recipient-hint" }, `An address of this network (${status.network}).`)),
      h("div", { class: "field" }, h("label", { for: "send-amount" }, "Amount (coins)"), amount,
        h("span", { class: "hint", id: "send-amount-hint" }, "For example 1.5; up to 8 decimal places.")),
      h("div", { class: "field" }, h("label", { for: "send-fee-rate" }, "Fee rate (units per byte, optional)"), feeRate,
        h("span", { class: "hint", id: "send-fee-rate-hint" }, "Leave empty for the node's default rate."))),
    h("div", { class: "actions" }, sendButton),
    sendMessage);
  sendForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    sendMessage.className = "message";
    sendMessage.textContent = "";
    let units;
    try {
      units = parseCoins(amount.value);
    } catch (error) {
      sendMessage.className = "message error";
      sendMessage.textContent = error.message;
      amount.focus();
      return;
    }
    const feeText = feeRate.value.trim();
    if (feeText && !/^\d+$/.test(feeText)) {
      sendMessage.className = "message error";
      sendMessage.textContent = "The fee rate is a whole number of units per byte, for example 2.";
      feeRate.focus();
      return;
    }
    // Built as text so amounts beyond JavaScript's exact integers reach the node unrounded.
    const body = `{"recipient":${JSON.stringify(recipient.value)},"amount":${units.toString()}${feeText ? `,"feeRate":${feeText}` : ""}}`;
    sendButton.disabled = true;
    sendButton.setAttribute("aria-busy", "true");
    try {
      const answer = await api("/transact", { method: "POST", body });
      sendMessage.className = "message ok";
      sendMessage.replaceChildren(`Sent ${formatCoins(units)} coins (fee ${formatCoins(answer.fee)}) in transaction `,
        txLink(answer.txid), ". It confirms with the next block.");
      amount.value = "";
      await refresh();
    } catch (error) {
      sendMessage.className = "message error";
      sendMessage.textContent = error.message;
    } finally {
      sendButton.disabled = false;
      sendButton.removeAttribute("aria-busy");
    }
  });

  const mineButton = h("button", { type: "button", id: "mine-button" }, "Mine a block");
  const mineMessage = h("p", { id: "mine-message", class: "message", role: "status" });
  mineButton.addEventListener("click", async () => {
    mineButton.disabled = true;
    mineButton.setAttribute("aria-busy", "true");
    mineMessage.className = "message";
    mineMessage.textContent = "Mining…";
    try {
      const block = await api("/mine-transactions", { method: "POST" });
      mineMessage.className = "message ok";
      mineMessage.replaceChildren(`Mined block #${block.height} `, blockLink(block.hash),
        ` with ${block.transactionCount} transaction(s); the reward goes to this wallet.`);
    } catch (error) {
      mineMessage.className = "message error";
      mineMessage.textContent = error.message;
    } finally {
      mineButton.disabled = false;
      mineButton.removeAttribute("aria-busy");
    }
  });

  // The API token form: only needed when the node requires a token.
  const tokenInput = h("input", { id: "api-token", name: "token", type: "password", autocomplete: "off", spellcheck: "false", "aria-describedby": "api-token-hint" });
  const tokenMessage = h("p", { id: "token-message", class: "message", role: "status" });
  const showTokenState = () => {
    tokenMessage.className = "message";
    tokenMessage.textContent = apiToken() ? "A token is set for this tab." : "No token set.";
  };
  const forgetButton = h("button", { type: "button", class: "secondary" }, "Forget token");
  forgetButton.addEventListener("click", () => {
    setApiToken("");
    tokenInput.value = "";
    showTokenState();
  });
  const tokenForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "token-heading" },
    h("fieldset", {},
      h("legend", { id: "token-heading" }, "API token"),
      h("div", { class: "field" }, h("label", { for: "api-token" }, "Token"), tokenInput,
        h("span", { class: "hint", id: "api-token-hint" },
          "Needed only when the node requires one (its HTTP port bound off loopback, or --require-token): the contents of the .cookie file in its data directory. Kept in this browser tab only."))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, "Use token"), forgetButton),
    tokenMessage);
  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = tokenInput.value.trim();
    tokenInput.value = "";
    if (!value) {
      tokenMessage.className = "message error";
      tokenMessage.textContent = "Paste the token first.";
      tokenInput.focus();
      return;
    }
    setApiToken(value);
    showTokenState();
  });
  showTokenState();

  const element = h("div", {},
    heading("Wallet"),
    h("section", { class: "panel", "aria-labelledby": "address-heading" },
      h("h2", { id: "address-heading" }, "This node's address"),
      h("p", { class: "address-line" }, addressCode, copyButton, copyMessage),
      h("p", { class: "muted" }, "Public key ", h("code", { class: "hash" }, key.publicKey))),
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "wallet-balance-heading" },
        h("h2", { id: "wallet-balance-heading" }, "Balance"), balanceFields),
      h("section", { class: "panel", "aria-labelledby": "mine-heading" },
        h("h2", { id: "mine-heading" }, "Mine"),
        h("p", { class: "muted" }, "Mines one block on this node with the pool's best transactions. On regtest that is instant; on devnet it takes a few seconds of real proof of work."),
        h("div", { class: "actions" }, mineButton), mineMessage)),
    h("section", { class: "panel" }, sendForm),
    h("section", { class: "panel", "aria-labelledby": "addresses-heading" },
      h("h2", { id: "addresses-heading" }, "Addresses"), addressesBody,
      h("div", { class: "actions" }, newAddressButton), newAddressMessage),
    h("section", { class: "panel" }, tokenForm));

  const refresh = async () => {
    const balance = await api("/balance");
    balanceFields.replaceChildren(fields([
      ["Spendable", h("strong", { "data-field": "spendable" }, coins(balance.spendable))],
      ["Total", h("span", { "data-field": "total" }, coins(balance.total))],
      ["Confirmed", coins(balance.confirmed)],
      ["Immature (new coinbase)", coins(balance.immature)],
      ["Incoming, unconfirmed", coins(balance.unconfirmedIncoming)],
      ["Outgoing, unconfirmed", coins(balance.unconfirmedOutgoing)],
    ]));
    const shown = balance.addresses.slice(-MAX_WALLET_ADDRESSES_SHOWN).reverse();
    const details = await Promise.all(shown.map((address) => api(`/address/${encodeURIComponent(address)}?limit=1`).catch(() => null)));
    const rows = shown.map((address, index) =>
      h("tr", { "data-address": address },
        cell([addressLink(address), address === balance.address ? [" ", h("span", { class: "badge" }, "default")] : null]),
        cell(details[index] ? coins(details[index].balance) : "–", true),
        cell(details[index] ? String(details[index].pending.length) : "–", true)));
    addressesBody.replaceChildren(table(
      balance.addresses.length > shown.length ? `The newest ${shown.length} of ${balance.addresses.length}` : null,
      [["Address"], ["Confirmed balance", true], ["Pending txs", true]], rows, "No addresses."));
  };
  await refresh();
  return { title: "Wallet", element, refresh };
}

// Charts -------------------------------------------------------------------------------

const CHART_WIDTH = 860;
const CHART_HEIGHT = 260;
const MARGIN = { left: 56, right: 16, top: 16, bottom: 36 };

/** A round step for about `count` ticks up to `max`. */
function tickStep(max, count) {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * magnitude >= raw) return factor * magnitude;
  }
  return 10 * magnitude;
}

function axes(svg, yMax, yMin, yLabel, formatTick, xLabels) {
  const plotHeight = CHART_HEIGHT - MARGIN.top - MARGIN.bottom;
  const y = (value) => MARGIN.top + plotHeight - ((value - yMin) / (yMax - yMin)) * plotHeight;
  const step = tickStep(yMax - yMin, 4);
  for (let value = Math.ceil(yMin / step) * step; value <= yMax + step / 1000; value += step) {
    svg.append(s("line", { class: "grid-line", x1: MARGIN.left, x2: CHART_WIDTH - MARGIN.right, y1: y(value), y2: y(value) }));
    svg.append(s("text", { x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end" }, formatTick(value)));
  }
  svg.append(s("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: CHART_HEIGHT - MARGIN.bottom }));
  svg.append(s("line", { class: "axis", x1: MARGIN.left, x2: CHART_WIDTH - MARGIN.right, y1: CHART_HEIGHT - MARGIN.bottom, y2: CHART_HEIGHT - MARGIN.bottom }));
  svg.append(s("text", { x: 12, y: MARGIN.top + plotHeight / 2, transform: `rotate(-90 12 ${MARGIN.top + plotHeight / 2})`, "text-anchor": "middle" }, yLabel));
  for (const [x, text, anchor] of xLabels) {
    svg.append(s("text", { x, y: CHART_HEIGHT - MARGIN.bottom + 16, "text-anchor": anchor }, text));
  }
  return y;
}

function median(values) {
  if (values.length === 0) return 0;
  const sorted = values.slice().sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function intervalChart(data) {
  const target = data.targetBlockTimeMs / 1000;
  const points = data.blocks.filter((block) => block.intervalMs !== null && block.intervalMs !== undefined);
  const seconds = points.map((block) => block.intervalMs / 1000);
  const mean = seconds.length ? seconds.reduce((a, b) => a + b, 0) / seconds.length : 0;
  const summary = seconds.length
    ? `${points.length} block intervals: mean ${formatDuration(mean * 1000)}, median ${formatDuration(median(seconds) * 1000)}, target ${formatDuration(target * 1000)}.`
    : "Not enough blocks for intervals yet.";
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, role: "img", "aria-labelledby": "interval-title interval-desc", "data-chart": "intervals" },
    s("title", { id: "interval-title" }, "Block intervals against the target"),
    s("desc", { id: "interval-desc" }, summary));
  // Outliers (a long pause, a node that was off) would flatten the rest: the scale stops at
  // ten targets and taller bars are drawn clipped, in another colour.
  const cap = target * 10;
  const yMax = Math.max(target * 2, Math.min(cap, Math.max(0, ...seconds)) * 1.1);
  const plotWidth = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const slot = plotWidth / Math.max(points.length, 1);
  const xLabels = points.length
    ? [[MARGIN.left + slot / 2, `#${points[0].height}`, "start"], [MARGIN.left + plotWidth - slot / 2, `#${points[points.length - 1].height}`, "end"]]
    : [];
  const y = axes(svg, yMax, 0, "seconds", (value) => formatNumber(value, 1), xLabels);
  const barWidth = Math.min(28, Math.max(1, slot * 0.8));
  points.forEach((block, index) => {
    const value = Math.max(0, block.intervalMs / 1000);
    const clipped = Math.min(value, yMax);
    const top = y(clipped);
    svg.append(s("rect", {
      class: value > yMax ? "bar over" : "bar",
      x: MARGIN.left + index * slot + (slot - barWidth) / 2,
      y: top,
      width: barWidth,
      height: Math.max(0.5, y(0) - top),
      "data-height": block.height,
    }, s("title", {}, `Block #${block.height}: ${formatDuration(block.intervalMs)} after its parent`)));
    if (value > yMax && slot >= 36) {
      svg.append(s("text", { class: "over-label", x: MARGIN.left + (index + 0.5) * slot, y: top - 4, "text-anchor": "middle" }, formatDuration(block.intervalMs)));
    }
  });
  svg.append(s("line", { class: "target", x1: MARGIN.left, x2: CHART_WIDTH - MARGIN.right, y1: y(target), y2: y(target), "data-target": target }));
  svg.append(s("text", { class: "target-label", x: CHART_WIDTH - MARGIN.right - 4, y: y(target) - 6, "text-anchor": "end" }, `target ${formatNumber(target, 1)} s`));
  return { svg, summary };
}

function difficultyChart(data) {
  const blocks = data.blocks;
  const values = blocks.map((block) => block.difficulty);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const summary = blocks.length
    ? (low === high
      ? `Difficulty ${formatNumber(low, 6)} over all ${blocks.length} blocks (bits ${blocks[0].bits}).`
      : `Difficulty from ${formatNumber(low, 6)} to ${formatNumber(high, 6)}; now ${formatNumber(values[values.length - 1], 6)} (bits ${blocks[blocks.length - 1].bits}).`)
    : "No blocks.";
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, role: "img", "aria-labelledby": "difficulty-title difficulty-desc", "data-chart": "difficulty" },
    s("title", { id: "difficulty-title" }, "Difficulty per block"),
    s("desc", { id: "difficulty-desc" }, summary));
  if (!blocks.length) return { svg, summary };
  const span = high - low;
  const yMin = span === 0 ? 0 : Math.max(0, low - span * 0.1);
  const yMax = span === 0 ? high * 2 || 1 : high + span * 0.1;
  const plotWidth = CHART_WIDTH - MARGIN.left - MARGIN.right;
  const x = (index) => MARGIN.left + (blocks.length === 1 ? plotWidth / 2 : (index / (blocks.length - 1)) * plotWidth);
  const y = axes(svg, yMax, yMin, "difficulty", (value) => formatNumber(value, value < 10 ? 3 : 1),
    [[x(0), `#${blocks[0].height}`, "start"], [x(blocks.length - 1), `#${blocks[blocks.length - 1].height}`, "end"]]);
  const path = blocks.map((block, index) => `${index === 0 ? "M" : "L"}${x(index).toFixed(1)},${y(block.difficulty).toFixed(1)}`).join(" ");
  svg.append(s("path", { class: "line", d: path }));
  if (blocks.length <= 120) {
    blocks.forEach((block, index) => svg.append(s("circle", { class: "dot", cx: x(index), cy: y(block.difficulty), r: 2.5 },
      s("title", {}, `Block #${block.height}: difficulty ${formatNumber(block.difficulty, 6)}, bits ${block.bits}`))));
  }
  return { svg, summary };
}

/** One reorganisation: the fork point, the branch that lost, the branch that won. */
function reorgDiagram(reorg, index) {
  const box = { width: 92, height: 30, gap: 18 };
  const lengths = Math.max(reorg.disconnected.length, reorg.connected.length, 1);
  const width = 24 + box.width + (box.width + box.gap) * lengths + 24;
  const height = 120;
  const titleId = `reorg-title-${index}`;
  const svg = s("svg", { class: "chart reorg", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": titleId, "data-chart": "reorg" },
    s("title", { id: titleId }, `Reorganisation of depth ${reorg.depth}: ${reorg.disconnected.length} block(s) left the main chain and ${reorg.connected.length} joined it after block #${reorg.forkHeight}.`));
  const forkX = 12;
  const forkY = height / 2 - box.height / 2;
  svg.append(s("g", { class: "fork" },
    s("rect", { x: forkX, y: forkY, width: box.width, height: box.height, rx: 4 }),
    s("text", { x: forkX + box.width / 2, y: forkY + 19, "text-anchor": "middle" }, `#${reorg.forkHeight}`)));
  const row = (blocks, rowY, className) => {
    const group = s("g", { class: className });
    let previousX = forkX + box.width;
    let previousY = forkY + box.height / 2;
    blocks.forEach((block, position) => {
      const x = forkX + box.width + box.gap + position * (box.width + box.gap);
      group.append(s("path", { class: "link", d: `M${previousX},${previousY} L${x},${rowY + box.height / 2}` }));
      const link = s("a", { href: `#/block/${block.hash}` },
        s("rect", { x, y: rowY, width: box.width, height: box.height, rx: 4 }),
        s("text", { x: x + box.width / 2, y: rowY + 19, "text-anchor": "middle" }, `#${block.height} ${block.hash.slice(0, 4)}`),
        s("title", {}, `Block #${block.height} ${block.hash}`));
      group.append(link);
      previousX = x + box.width;
      previousY = rowY + box.height / 2;
    });
    svg.append(group);
  };
  row(reorg.connected, 8, "branch-new");
  row(reorg.disconnected, height - box.height - 8, "branch-old");
  return svg;
}

function reorgSection() {
  if (state.reorgs.length === 0) {
    return [h("p", { class: "empty", "data-reorgs": "0" }, "No reorganisations seen since this page was opened. When a heavier branch replaces blocks of the main chain, it is drawn here: the winning branch above, the abandoned one below.")];
  }
  return [
    h("ul", { class: "legend" },
      h("li", {}, h("span", { class: "swatch new" }), "joined the main chain"),
      h("li", {}, h("span", { class: "swatch old" }), "left the main chain")),
    h("ol", { class: "activity", reversed: true, "data-reorgs": state.reorgs.length },
      state.reorgs.map((reorg, index) => h("li", {},
        h("p", {}, h("time", { datetime: reorg.time.toISOString() }, clock(reorg.time)),
          `Depth ${reorg.depth}: new tip `, blockLink(reorg.tipHash, `#${reorg.tipHeight}`), `, fork at #${reorg.forkHeight}.`),
        h("div", { class: "table-wrap" }, reorgDiagram(reorg, index))))),
  ];
}

async function chartsView(query) {
  const choices = [50, 100, 250, 500, 1000, 2000];
  const requested = Number(query.get("last") ?? 100);
  const last = choices.includes(requested) ? requested : 100;
  const select = h("select", { id: "chart-last", name: "last" }, choices.map((value) => h("option", { value, selected: value === last }, `last ${value} blocks`)));
  select.addEventListener("change", () => {
    location.hash = `#/charts?last=${select.value}`;
  });
  const intervals = h("div");
  const difficulty = h("div");
  const reorgs = h("div");
  const element = h("div", {},
    heading("Charts"),
    h("p", { class: "field" }, h("label", { for: "chart-last" }, "Blocks shown"), select),
    h("section", { class: "panel", "aria-labelledby": "intervals-heading" }, h("h2", { id: "intervals-heading" }, "Block intervals"), intervals),
    h("section", { class: "panel", "aria-labelledby": "difficulty-heading" }, h("h2", { id: "difficulty-heading" }, "Difficulty"), difficulty),
    h("section", { class: "panel", "aria-labelledby": "reorgs-heading" }, h("h2", { id: "reorgs-heading" }, "Recent reorganisations"), reorgs));
  const refresh = async () => {
    const data = await api(`/charts?last=${last}`);
    const interval = intervalChart(data);
    intervals.replaceChildren(interval.svg, h("p", { class: "muted" }, interval.summary),
      h("ul", { class: "legend" },
        h("li", {}, h("span", { class: "swatch bar" }), "time since the parent block"),
        h("li", {}, h("span", { class: "swatch over" }), "longer than the scale (clipped)"),
        h("li", {}, h("span", { class: "swatch target" }), "target block time")));
    const chart = difficultyChart(data);
    difficulty.replaceChildren(chart.svg, h("p", { class: "muted" }, chart.summary));
    reorgs.replaceChildren(...reorgSection());
  };
  await refresh();
  return { title: "Charts", element, refresh };
}

// ---------------------------------------------------------------------------------------
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
