// The charts view: block intervals, difficulty, and the reorganisations seen since the
// page was opened.

import { api } from "./api.js";
import { blockLink, h, heading, s, table } from "./dom.js";
import { clock, formatDuration, formatNumber } from "./format.js";
import { state } from "./state.js";

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

export async function chartsView(query) {
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
