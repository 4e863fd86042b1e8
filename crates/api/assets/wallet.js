// The wallet view: balance, addresses, sending, mining and the API token form.

import { api, apiToken, setApiToken } from "./api.js";
import { addressLink, blockLink, cell, fields, h, heading, table, txLink } from "./dom.js";
import { coins, formatCoins, parseCoins, when } from "./format.js";
import { refreshStatus, state } from "./state.js";

const MAX_WALLET_ADDRESSES_SHOWN = 20;

export async function walletView() {
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
      if (error.status === 401) {
        showTokenNeeded(newAddressMessage, error.message);
      } else {
        newAddressMessage.className = "message error";
        newAddressMessage.textContent = error.message;
      }
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
  // Each field's own error line, under it: an error is shown at the field it is about, the
  // field is marked invalid and focused, and the form's message (by the Send button)
  // repeats it for screen readers.
  const fieldError = (id) => h("span", { class: "field-error", id: `${id}-error` });
  const recipientError = fieldError("send-recipient");
  const amountError = fieldError("send-amount");
  const feeRateError = fieldError("send-fee-rate");
  const fieldsWithErrors = [[recipient, recipientError], [amount, amountError], [feeRate, feeRateError]];
  const clearFieldErrors = () => {
    for (const [input, error] of fieldsWithErrors) {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", `${input.id}-hint`);
      error.textContent = "";
    }
  };
  const showSendError = (text, input) => {
    sendMessage.className = "message error";
    sendMessage.replaceChildren(text);
    const pair = fieldsWithErrors.find(([candidate]) => candidate === input);
    if (pair) {
      const [field, error] = pair;
      error.textContent = text;
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", `${field.id}-hint ${error.id}`);
      field.focus();
      field.scrollIntoView({ block: "center" });
    } else {
      sendMessage.scrollIntoView({ block: "nearest" });
    }
  };
  // The field a node's refusal of a payment is about, from its text (the node's words are
  // shown unchanged; only their place is chosen here).
  const fieldOfNodeError = (text) => {
    if (/recipient|address|public key|checksum|network/i.test(text)) return recipient;
    if (/insufficient funds|amount|at least 1 unit|money supply/i.test(text)) return amount;
    if (/fee rate/i.test(text)) return feeRate;
    return null;
  };
  const sendForm = h("form", { class: "form", novalidate: true, "aria-labelledby": "send-heading" },
    h("fieldset", {},
      h("legend", { id: "send-heading" }, "Send coins"),
      h("div", { class: "field" }, h("label", { for: "send-recipient" }, "Recipient address"), recipient,
        h("span", { class: "hint", id: "send-recipient-hint" }, `An address of this network (${status.network}).`), recipientError),
      h("div", { class: "field" }, h("label", { for: "send-amount" }, "Amount (coins)"), amount,
        h("span", { class: "hint", id: "send-amount-hint" }, "For example 1.5; up to 8 decimal places."), amountError),
      h("div", { class: "field" }, h("label", { for: "send-fee-rate" }, "Fee rate (units per byte, optional)"), feeRate,
        h("span", { class: "hint", id: "send-fee-rate-hint" }, "Leave empty for the node's default rate."), feeRateError)),
    h("div", { class: "actions" }, sendButton),
    sendMessage);
  sendForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    sendMessage.className = "message";
    sendMessage.textContent = "";
    clearFieldErrors();
    let units;
    try {
      units = parseCoins(amount.value);
    } catch (error) {
      showSendError(error.message, amount);
      return;
    }
    const feeText = feeRate.value.trim();
    if (feeText && !/^\d+$/.test(feeText)) {
      showSendError("The fee rate is a whole number of units per byte, for example 2.", feeRate);
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
      if (error.status === 401) {
        showTokenNeeded(sendMessage, error.message);
      } else {
        showSendError(error.message, fieldOfNodeError(error.message));
      }
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
      if (error.status === 401) {
        showTokenNeeded(mineMessage, error.message);
      } else {
        mineMessage.className = "message error";
        mineMessage.textContent = error.message;
      }
    } finally {
      mineButton.disabled = false;
      mineButton.removeAttribute("aria-busy");
    }
  });

  // A refusal for want of the token is shown where the user clicked, with a button that
  // takes them to the token form at the bottom of the page.
  function showTokenNeeded(message, text) {
    const goToToken = h("button", { type: "button", class: "secondary inline" }, "Enter the API token");
    goToToken.addEventListener("click", () => {
      tokenInput.scrollIntoView({ block: "center" });
      tokenInput.focus();
    });
    message.className = "message error";
    message.replaceChildren(text, " ", goToToken);
    message.scrollIntoView({ block: "nearest" });
  }

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
      ["of which from others (spendable once confirmed)", coins(balance.unconfirmedFromOthers)],
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
