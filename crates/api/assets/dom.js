// DOM helpers: elements built from data (always as text nodes, never as HTML), links to
// blocks, transactions and addresses, tables and headings.

import { shortHash } from "./format.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/** Builds an element: h("a", { href: "#/" }, "text", child). Strings become text nodes. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  appendChildren(element, children);
  return element;
}

/** Builds an SVG element. */
export function s(tag, attributes = {}, ...children) {
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


// Shortened hashes stay on one line; full ones may wrap.
export function blockLink(hashOrHeight, text) {
  return h("a", { href: `#/block/${hashOrHeight}`, class: text === undefined ? "hash nowrap" : "hash", title: String(hashOrHeight) }, text ?? shortHash(String(hashOrHeight)));
}

export function txLink(txid, text) {
  return h("a", { href: `#/tx/${txid}`, class: text === undefined ? "hash nowrap" : "hash", title: txid }, text ?? shortHash(txid));
}

export function addressLink(address, text) {
  return h("a", { href: `#/address/${address}`, class: "hash", title: address }, text ?? address);
}

export function fields(pairs) {
  return h("dl", { class: "fields" }, pairs.filter(Boolean).map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

export function table(caption, headings, rows, emptyText) {
  if (rows.length === 0) return h("p", { class: "empty" }, emptyText);
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, headings.map(([text, numeric]) => h("th", { scope: "col", class: numeric ? "num" : null }, text)))),
      h("tbody", {}, rows)));
}

export function cell(content, numeric = false) {
  return h("td", { class: numeric ? "num" : null }, content);
}


export function heading(text, sub) {
  return h("h1", { tabindex: "-1" }, text, sub ? h("span", { class: "sub" }, sub) : null);
}

export function stat(name, key, value, extra) {
  return h("div", { class: "stat" }, h("dt", {}, name), h("dd", { "data-stat": key }, value, extra ? h("small", {}, extra) : null));
}

/** Blocks as table rows; `compact` leaves out size and difficulty (for the overview). */
