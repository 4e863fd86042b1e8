// Drives the dashboard of a running regtest node in headless Chromium.
//
//   node tests/browser/dashboard.test.mjs <node url> <screenshot dir>
//
// crates/cli/tests/dashboard.rs starts the node and runs this script. It uses Debian's
// Chromium (/usr/bin/chromium, or POWCHAIN_CHROMIUM) through playwright-core; Playwright's
// own browser downloads are never used. Every wait is on a condition with a deadline.
// Exit code 0 means every step passed; each step prints one line with its time.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [baseUrl, screenshotDir] = process.argv.slice(2);
if (!baseUrl || !screenshotDir) {
  console.error("usage: node dashboard.test.mjs <node url> <screenshot dir>");
  process.exit(2);
}
const executablePath = process.env.POWCHAIN_CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 15_000;
mkdirSync(screenshotDir, { recursive: true });

const started = Date.now();
let passed = 0;
const pageErrors = [];

async function step(name, work) {
  const begin = Date.now();
  try {
    await work();
  } catch (error) {
    console.log(`not ok - ${name} (${Date.now() - begin} ms)`);
    throw error;
  }
  passed += 1;
  console.log(`ok - ${name} (${Date.now() - begin} ms)`);
}

async function screenshot(page, name) {
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, animations: "disabled" });
}

function watch(page, label) {
  page.on("pageerror", (error) => pageErrors.push(`${label}: uncaught ${error.message}`));
  page.on("console", (message) => {
    // A refused request logs "Failed to load resource" (400s are part of the test).
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      pageErrors.push(`${label}: console error ${message.text()}`);
    }
  });
}

/** The text of the first element matching `selector`, trimmed. */
async function text(page, selector) {
  return (await page.locator(selector).first().textContent({ timeout: WAIT_MS })).trim();
}

/** Waits until the element's text satisfies `predicate` (a string means "equals"). */
async function waitForText(page, selector, predicate, what) {
  const test = typeof predicate === "string" ? (value) => value === predicate : predicate;
  const deadline = Date.now() + WAIT_MS;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.locator(selector).first().textContent({ timeout: 1_000 }).catch(() => null);
    if (last !== null && test(last.trim())) return last.trim();
    await page.waitForTimeout(50);
  }
  throw new Error(`timed out waiting for ${what ?? selector}; last text: ${JSON.stringify(last)}`);
}

/** Calls the node's API from the page (same origin), returning { status, json }. */
async function apiFromPage(page, apiPath, init) {
  return page.evaluate(async ([apiPath, init]) => {
    const response = await fetch(apiPath, init);
    return { status: response.status, json: await response.json() };
  }, [apiPath, init ?? {}]);
}

function coinsText(units) {
  const whole = BigInt(units) / 100_000_000n;
  const fraction = (BigInt(units) % 100_000_000n).toString().padStart(8, "0").replace(/0+$/, "");
  return `${whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",")}${fraction ? "." + fraction : ""} coins`;
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As this machine needs them: no sandbox (root), no GPU, and no background connections to
  // the outside (the network is closed); playwright gives each launch a fresh profile.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(baseUrl).origin });
  context.setDefaultTimeout(WAIT_MS);
  // Two tabs: `overview` only watches; `app` clicks. The overview must follow along live.
  const overview = await context.newPage();
  const app = await context.newPage();
  watch(overview, "overview tab");
  watch(app, "app tab");

  let tipHeight = 0;

  await step("the overview loads from the node and goes live", async () => {
    await overview.goto(baseUrl);
    await overview.locator('#live[data-state="live"]').waitFor();
    assert.equal(await text(overview, '[data-stat="network"]'), "regtest");
    tipHeight = Number(await text(overview, '[data-stat="height"]'));
    assert.equal(tipHeight, 0, "a new regtest node is at genesis");
    const status = await apiFromPage(overview, "/status");
    assert.ok((await text(overview, '[data-stat="tip"]')).startsWith(status.json.tip.slice(0, 10)));
    assert.match(await text(overview, '[data-stat="peers"]'), /^\d+$/);
    assert.ok((await text(overview, '[data-stat="pool"]')).startsWith("0 tx"));
    assert.match(await text(overview, '[data-stat="sync"]'), /In sync/);
    assert.match(await text(overview, '[data-stat="hashrate"]'), /H\/s/);
    assert.equal(await overview.locator("main table tbody tr").count(), 1, "genesis is listed");
    // A reload would drop this marker: it proves later changes arrived live.
    await overview.evaluate(() => { window.notReloaded = true; });
  });

  await step("the wallet page shows the node's address and copies it", async () => {
    await app.goto(baseUrl);
    await app.getByRole("link", { name: "Wallet", exact: true }).click();
    await app.locator("#wallet-address").waitFor();
    const key = await apiFromPage(app, "/public-key");
    assert.equal(await text(app, "#wallet-address"), key.json.address);
    await app.getByRole("button", { name: "Copy address" }).click();
    await waitForText(app, ".address-line [role=status]", (value) => value.length > 0, "copy confirmation");
    assert.equal(await app.evaluate(() => navigator.clipboard.readText()), key.json.address);
    await app.evaluate(() => { window.notReloaded = true; });
  });

  await step("'Mine a block' mines; the other tab shows the new block without a reload", async () => {
    for (let round = 1; round <= 2; round += 1) {
      await app.getByRole("button", { name: "Mine a block" }).click();
      await waitForText(app, "#mine-message", (value) => value.startsWith(`Mined block #${round} `), `mined block #${round}`);
      await waitForText(overview, '[data-stat="height"]', String(round), `overview height ${round}`);
    }
    tipHeight = 2;
    await overview.locator('main table tbody tr[data-height="2"]').waitFor();
    await waitForText(overview, ".activity", (value) => value.includes("Block #2 connected"), "activity entry");
    assert.equal(await overview.evaluate(() => window.notReloaded), true, "the overview was not reloaded");
    const balance = await apiFromPage(app, "/balance");
    assert.equal(balance.json.spendable, 100 * 100_000_000, "two mature coinbases");
    await waitForText(app, '[data-field="spendable"]', coinsText(balance.json.spendable), "spendable balance");
  });

  let freshAddress = "";
  let sentTxid = "";
  const spendableBefore = await apiFromPage(app, "/balance").then((answer) => answer.json.spendable);

  await step("a fresh address from the UI, then coins sent with the keyboard alone", async () => {
    await app.getByRole("button", { name: "New receive address" }).click();
    const link = app.locator(".message.ok a[href^='#/address/']");
    await link.waitFor();
    freshAddress = (await link.textContent()).trim();
    assert.match(freshAddress, /^powrt1/);
    // getByLabel finds each field only through its <label>.
    await app.getByLabel("Recipient address").focus();
    await app.keyboard.type(freshAddress);
    await app.keyboard.press("Tab");
    assert.equal(await app.evaluate(() => document.activeElement.id), "send-amount");
    await app.keyboard.type("12.5");
    await app.keyboard.press("Tab");
    assert.equal(await app.evaluate(() => document.activeElement.id), "send-fee-rate");
    await app.keyboard.type("3");
    await app.keyboard.press("Tab");
    assert.equal(await app.evaluate(() => document.activeElement.textContent), "Send");
    await app.keyboard.press("Enter");
    await waitForText(app, "#send-message", (value) => value.startsWith("Sent 12.5 coins"), "send confirmation");
    assert.equal(await app.locator("#send-message").getAttribute("class"), "message ok");
    const href = await app.locator("#send-message a").getAttribute("href");
    sentTxid = href.replace("#/tx/", "");
    assert.match(sentTxid, /^[0-9a-f]{64}$/);
  });

  await step("the pool entry appears live, with its fee rate", async () => {
    await waitForText(overview, '[data-stat="pool"]', (value) => value.startsWith("1 tx"), "overview pool count");
    await waitForText(overview, ".activity", (value) => value.includes("Transaction entered the pool"), "pool activity");
    await app.getByRole("link", { name: "Pool", exact: true }).click();
    const row = app.locator(`tr[data-txid="${sentTxid}"]`);
    await row.waitFor();
    const pooled = await apiFromPage(app, "/transactions");
    assert.equal(pooled.json.length, 1);
    assert.ok((await row.textContent()).includes("units/B"));
    assert.ok(pooled.json[0].feeRate >= 3, "the form's fee rate was used");
    await screenshot(app, "pool");
  });

  await step("mining confirms the payment; balances change without a reload", async () => {
    await app.getByRole("link", { name: "Wallet", exact: true }).click();
    await app.locator("#mine-button").waitFor();
    await app.getByRole("button", { name: "Mine a block" }).click();
    await waitForText(app, "#mine-message", (value) => value.startsWith("Mined block #3 ") && value.includes("with 2 transaction(s)"), "block #3 with the payment");
    tipHeight = 3;
    await waitForText(overview, '[data-stat="height"]', "3", "overview height 3");
    await waitForText(overview, '[data-stat="pool"]', (value) => value.startsWith("0 tx"), "pool emptied");
    const balance = await apiFromPage(app, "/balance");
    assert.notEqual(balance.json.spendable, spendableBefore);
    await waitForText(app, '[data-field="spendable"]', coinsText(balance.json.spendable), "new spendable balance");
    await waitForText(app, `tr[data-address="${freshAddress}"] td:nth-child(2)`, "12.5 coins", "the fresh address's balance");
    assert.equal(await overview.evaluate(() => window.notReloaded), true, "the overview was not reloaded");
    assert.equal(await app.evaluate(() => window.notReloaded), true, "the wallet was not reloaded");
  });

  await step("bad input in the send form shows the node's own error", async () => {
    const cases = [
      { recipient: "garbage", amount: "1", expect: /invalid recipient/, field: "send-recipient" },
      { recipient: freshAddress, amount: "0", expect: /at least 1 unit/, field: "send-amount" },
      { recipient: freshAddress, amount: "1000000", expect: /insufficient funds/, field: "send-amount" },
    ];
    for (const bad of cases) {
      await app.getByLabel("Recipient address").fill(bad.recipient);
      await app.getByLabel("Amount (coins)").fill(bad.amount);
      await app.getByLabel("Fee rate (units per byte, optional)").fill("");
      const units = Number(BigInt(bad.amount) * 100_000_000n);
      const direct = await apiFromPage(app, "/transact", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ recipient: bad.recipient, amount: units }),
      });
      assert.ok(direct.status >= 400 && direct.status < 500, `the node refuses ${JSON.stringify(bad)}`);
      assert.match(direct.json.error, bad.expect);
      await app.getByRole("button", { name: "Send", exact: true }).click();
      await waitForText(app, "#send-message", direct.json.error, `the node's error for ${JSON.stringify(bad)}`);
      assert.equal(await app.locator("#send-message").getAttribute("class"), "message error");
      assert.equal(await app.locator("#send-message").getAttribute("role"), "alert");
      // Shown at the field it is about too: marked invalid, described by the error, focused.
      assert.equal(await text(app, `#${bad.field}-error`), direct.json.error, `the error under ${bad.field}`);
      assert.equal(await app.locator(`#${bad.field}`).getAttribute("aria-invalid"), "true");
      assert.match(await app.locator(`#${bad.field}`).getAttribute("aria-describedby"), new RegExp(`${bad.field}-error`));
      assert.equal(await app.evaluate(() => document.activeElement.id), bad.field);
      const others = ["send-recipient", "send-amount", "send-fee-rate"].filter((id) => id !== bad.field);
      for (const other of others) {
        assert.equal(await app.locator(`#${other}`).getAttribute("aria-invalid"), null, `${other} is not marked`);
      }
    }
    await app.getByLabel("Amount (coins)").fill("1.123456789");
    await app.getByRole("button", { name: "Send", exact: true }).click();
    await waitForText(app, "#send-message", (value) => value.includes("at most 8 decimal places"), "amount format error");
    await screenshot(app, "wallet");
  });

  await step("blocks page, newest first, and a block page with its header and transactions", async () => {
    await app.getByRole("link", { name: "Blocks", exact: true }).click();
    // The wallet page's table rows may still be there until the blocks page renders: wait
    // for the list's last row (genesis), not for any row.
    await app.locator('main tbody tr[data-height="0"]').waitFor();
    const heights = await app.locator("main tbody tr").evaluateAll((rows) => rows.map((row) => Number(row.dataset.height)));
    assert.deepEqual(heights, [3, 2, 1, 0]);
    await screenshot(app, "blocks");
    await app.locator('main tbody tr[data-height="3"] td:nth-child(2) a').click();
    await waitForText(app, "main h1", (value) => value.startsWith("Block #3"), "block page");
    const block = await apiFromPage(app, "/blocks/3");
    const terms = await app.locator("main dl.fields dt").allTextContents();
    for (const field of ["Hash", "Previous block", "Confirmations", "Time", "Difficulty", "Bits", "Nonce", "Merkle root", "Size", "Transactions"]) {
      assert.ok(terms.includes(field), `block page shows ${field}`);
    }
    assert.ok((await app.locator("main").textContent()).includes(block.json.merkleRoot));
    assert.equal(await app.locator("main section:has(h2:text-is('Transactions')) tbody tr").count(), 2);
    await screenshot(app, "block");
  });

  await step("a transaction page: inputs, outputs, fee, confirmations", async () => {
    await app.locator(`main a[href="#/tx/${sentTxid}"]`).click();
    await waitForText(app, "main h1", (value) => value.startsWith("Transaction"), "transaction page");
    const lookup = await apiFromPage(app, `/tx/${sentTxid}`);
    const summary = await app.locator("main dl.fields").textContent();
    assert.ok(summary.includes("confirmed"));
    assert.ok(summary.includes(coinsText(lookup.json.fee)), "fee shown");
    assert.equal(lookup.json.confirmations, 1);
    assert.equal(await text(app, 'main dl.fields dt:text-is("Confirmations") + dd'), "1");
    assert.equal(await app.locator("main section:has(h2:text-is('Inputs')) tbody tr").count(), lookup.json.inputs.length);
    assert.equal(await app.locator("main section:has(h2:text-is('Outputs')) tbody tr").count(), lookup.json.outputs.length);
    await screenshot(app, "transaction");
  });

  await step("an address page: balance, unspent outputs, history", async () => {
    await app.locator(`main section:has(h2:text-is('Outputs')) a[href="#/address/${freshAddress}"]`).click();
    await waitForText(app, "main h1", (value) => value.startsWith("Address"), "address page");
    assert.equal(await text(app, '[data-field="address-balance"]'), "12.5 coins");
    assert.equal(await app.locator("main section:has(h2:text-is('Unspent outputs')) tbody tr").count(), 1);
    assert.equal(await app.locator(`main section:has(h2:text-is('History')) a[href="#/tx/${sentTxid}"]`).count(), 1);
    await screenshot(app, "address");
  });

  await step("the search box finds heights, hashes, transaction ids and addresses", async () => {
    const search = async (query) => {
      await app.getByLabel("Search by block hash, height, transaction id or address").fill(query);
      await app.keyboard.press("Enter");
    };
    await search("1");
    await waitForText(app, "main h1", (value) => value.startsWith("Block #1"), "block #1 by height");
    const block2 = await apiFromPage(app, "/blocks/2");
    await search(block2.json.hash);
    await waitForText(app, "main h1", (value) => value.startsWith("Block #2"), "block #2 by hash");
    await search(sentTxid);
    await waitForText(app, "main h1", (value) => value.startsWith("Transaction") && value.includes(sentTxid), "transaction by id");
    await search(freshAddress);
    await waitForText(app, "main h1", (value) => value.startsWith("Address") && value.includes(freshAddress), "address");
    await search("no-such-thing");
    await waitForText(app, "#search-message", (value) => value.startsWith("Nothing found"), "nothing found message");
    await search("9999");
    await waitForText(app, "main [role=alert]", (value) => value.includes("no block at height 9999"), "missing height");
  });

  await step("the peers page lists connections or says there are none", async () => {
    await app.getByRole("link", { name: "Peers", exact: true }).click();
    await app.locator("main h1").filter({ hasText: "Peers" }).waitFor();
    const expected = Number(process.env.POWCHAIN_EXPECT_PEERS ?? "0");
    if (expected === 0) {
      await waitForText(app, "main .empty", (value) => value.startsWith("No peers connected"), "no peers");
    } else {
      // The page polls: wait for the peer the test started, then check its row.
      await waitForText(app, "main caption", `${expected} connected`, "the connected peer");
      const peers = await apiFromPage(app, "/peers");
      const row = await app.locator("main tbody tr").first().textContent();
      assert.ok(row.includes(peers.json[0].url) && /inbound|outbound/.test(row));
    }
    await app.getByLabel("Peer address").fill("http://not-a-websocket");
    await app.getByRole("button", { name: "Connect" }).click();
    await waitForText(app, "main [role=alert]", (value) => value.length > 0, "the node's answer to a bad peer address");
    await screenshot(app, "peers");
  });

  await step("charts: block intervals against the 3 s target and difficulty, as SVG", async () => {
    await app.getByRole("link", { name: "Charts", exact: true }).click();
    await app.locator('svg[data-chart="intervals"]').waitFor();
    assert.equal(await app.locator('svg[data-chart="intervals"] rect.bar').count(), tipHeight, "one bar per interval");
    assert.equal(await app.locator('svg[data-chart="intervals"] line.target').getAttribute("data-target"), "3");
    assert.equal(await app.locator('svg[data-chart="difficulty"] path.line').count(), 1);
    await app.locator('[data-reorgs="0"]').waitFor();
    // A live block redraws the charts.
    await apiFromPage(app, "/mine", { method: "POST" });
    tipHeight = 4;
    await app.locator('svg[data-chart="intervals"] rect.bar[data-height="4"]').waitFor();
    await screenshot(app, "charts");
    // One node cannot reorganise by itself: feed the page the events a depth-2 reorg sends.
    await app.evaluate(async () => {
      const { handleNodeEvent } = await import("/assets/app.js");
      const hash = (digit) => digit.repeat(64);
      handleNodeEvent({ type: "blockDisconnected", hash: hash("a"), height: 4 });
      handleNodeEvent({ type: "blockDisconnected", hash: hash("b"), height: 3 });
      handleNodeEvent({ type: "blockConnected", hash: hash("c"), height: 3 });
      handleNodeEvent({ type: "blockConnected", hash: hash("d"), height: 4 });
      handleNodeEvent({ type: "blockConnected", hash: hash("e"), height: 5 });
      handleNodeEvent({ type: "tipChanged", hash: hash("e"), height: 5, work: "c", reorgDepth: 2 });
    });
    await app.locator('svg[data-chart="reorg"]').waitFor();
    assert.equal(await app.locator('svg[data-chart="reorg"] .branch-old rect').count(), 2);
    assert.equal(await app.locator('svg[data-chart="reorg"] .branch-new rect').count(), 3);
    await screenshot(app, "charts-reorg-synthetic");
  });

  const tokenNode = process.env.POWCHAIN_TOKEN_NODE;
  const tokenNodeToken = process.env.POWCHAIN_TOKEN_NODE_TOKEN;
  if (tokenNode && tokenNodeToken) {
    await step("a node that requires a token: mining is refused until the token is entered", async () => {
      const page = await context.newPage();
      watch(page, "token tab");
      await page.goto(`${tokenNode}/#/wallet`);
      // The token node is the main node's peer: its block must extend the same chain.
      const deadline = Date.now() + WAIT_MS;
      while ((await apiFromPage(page, "/status")).json.height !== tipHeight) {
        assert.ok(Date.now() < deadline, "the token node caught up with the main node");
        await page.waitForTimeout(50);
      }
      await page.getByRole("button", { name: "Mine a block" }).click();
      const refusal = await waitForText(page, "#mine-message", (value) => /token/.test(value) && !/Mining/.test(value), "the 401 refusal");
      assert.match(refusal, /\.cookie/, "the refusal names the cookie file");
      // The refusal offers the way to the token form, at the bottom of the page.
      await page.locator("#mine-message").getByRole("button", { name: "Enter the API token" }).click();
      assert.equal(await page.evaluate(() => document.activeElement.id), "api-token");
      await page.getByLabel("Token", { exact: true }).fill("0".repeat(64));
      await page.getByRole("button", { name: "Use token" }).click();
      await page.getByRole("button", { name: "Mine a block" }).click();
      await waitForText(page, "#mine-message", (value) => /token/.test(value) && !/Mining/.test(value), "a wrong token refused");
      await page.getByLabel("Token", { exact: true }).fill(tokenNodeToken);
      await page.getByRole("button", { name: "Use token" }).click();
      await waitForText(page, "#token-message", (value) => value === "A token is set for this tab.", "the token kept");
      await page.getByRole("button", { name: "Mine a block" }).click();
      tipHeight += 1;
      await waitForText(page, "#mine-message", (value) => value.startsWith(`Mined block #${tipHeight} `), "a block mined with the token");
      await screenshot(page, "wallet-token");
      await page.getByRole("button", { name: "Forget token" }).click();
      await waitForText(page, "#token-message", (value) => value === "No token set.", "the token forgotten");
      await page.close();
    });
  }

  await step("the overview followed everything live, and nothing threw", async () => {
    await waitForText(overview, '[data-stat="height"]', String(tipHeight), "final height");
    assert.equal(await overview.evaluate(() => window.notReloaded), true, "the overview was not reloaded");
    await screenshot(overview, "overview");
    assert.deepEqual(pageErrors, [], "no script errors");
  });
} catch (error) {
  exitCode = 1;
  console.log(error.stack ?? String(error));
  if (pageErrors.length) console.log(`page errors:\n  ${pageErrors.join("\n  ")}`);
} finally {
  if (exitCode !== 0) {
    for (const [index, page] of browser.contexts().flatMap((context) => context.pages()).entries()) {
      await screenshot(page, `failure-${index}`).catch(() => {});
    }
  }
  await browser.close();
}

console.log(`browser test took ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${screenshotDir}`);
console.log(`${passed} passed, ${exitCode} failed`);
process.exit(exitCode);
