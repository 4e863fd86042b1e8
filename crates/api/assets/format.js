// Formatting: coins, numbers, sizes, durations and times as a person reads them.

import { h } from "./dom.js";

const UNITS_PER_COIN = 100_000_000n;

/** Units (integer) as coins, without trailing zeros: 150000000 -> "1.5". */
export function formatCoins(units) {
  const value = BigInt(units);
  const negative = value < 0n;
  const absolute = negative ? -value : value;
  const whole = absolute / UNITS_PER_COIN;
  const fraction = (absolute % UNITS_PER_COIN).toString().padStart(8, "0").replace(/0+$/, "");
  const wholeText = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${wholeText}${fraction ? "." + fraction : ""}`;
}

export function coins(units) {
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

export function formatNumber(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits });
}

export function formatHashrate(hashesPerSecond) {
  const units = ["H/s", "kH/s", "MH/s", "GH/s", "TH/s"];
  let value = hashesPerSecond;
  let index = 0;
  while (value >= 1000 && index < units.length - 1) {
    value /= 1000;
    index += 1;
  }
  return `${formatNumber(value, value < 10 ? 2 : 1)} ${units[index]}`;
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${formatNumber(bytes / 1024, 1)} kB`;
  return `${formatNumber(bytes / 1024 / 1024, 1)} MB`;
}

export function formatDuration(milliseconds) {
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
export function when(timestampMs) {
  const date = new Date(timestampMs);
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString() }, timeAgo(timestampMs));
}

export function clock(date) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

export function shortHash(hash) {
  return hash.length > 20 ? `${hash.slice(0, 10)}…${hash.slice(-8)}` : hash;
}
