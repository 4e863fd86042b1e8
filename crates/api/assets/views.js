// The chain and node views: overview, blocks, a block, a transaction, an address, the
// pool and the peers. Each returns { title, element, refresh? }; refresh updates the live
// parts in place (never the parts a person may be typing into).

import { ApiError, api } from "./api.js";
import { addressLink, blockLink, cell, fields, h, heading, stat, table, txLink } from "./dom.js";
import { clock, coins, formatBytes, formatHashrate, formatNumber, shortHash, when } from "./format.js";
import { refreshStatus, state } from "./state.js";

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

export async function overviewView() {
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

export async function blocksView(query) {
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

export async function blockView(id) {
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

export async function transactionView(txid) {
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

export async function addressView(address) {
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

export async function poolView() {
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

export async function peersView() {
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
