// Inline SVG charts: the coupling heatmap (variables × sites, the look of core/report.py)
// and the IIA-against-wall-time scatter of the compare view.

import { h, s, fmt } from "./dom.js";

const CELL = 18; // px per heatmap cell, as in the HTML report
const ROW_LABEL_PAD = 12;

/** White → deep blue, on the cell's share of its row's largest weight (core/report.py). */
export function cellColor(share) {
  const shade = Math.round(255 - 200 * Math.max(0, Math.min(1, share)));
  return `rgb(${shade},${shade + Math.floor((255 - shade) / 3)},255)`;
}

function textWidth(text, px) {
  return text.length * px * 0.62;
}

/**
 * The (V, S) coupling as a heatmap, each row scaled to its own maximum. Variable names
 * stay in a fixed column; the cells and the rotated site ids scroll horizontally (a level
 * with 500 sites is 9,000 px wide) inside a focusable region, so the page never widens.
 */
export function heatmap({ variables, sites, rows, kept = [], caption }) {
  const keptSet = new Set(kept);
  const longest = textWidth(sites.reduce((a, b) => (b.length > a.length ? b : a), ""), 10);
  const labelH = Math.ceil(16 + longest * 0.87); // labels are rotated by 60°
  const labelW = Math.ceil(Math.max(60, ...variables.map((v) => textWidth(v, 12))) + ROW_LABEL_PAD);
  const height = labelH + CELL * variables.length + 4;
  const width = Math.ceil(CELL * sites.length + longest * 0.5 + 12); // the last label leans right

  const names = s("svg", { width: labelW, height, class: "hm-names", "aria-hidden": "true" });
  variables.forEach((variable, v) => {
    names.append(s("text", { x: labelW - 6, y: labelH + v * CELL + CELL - 5, "text-anchor": "end",
      "font-size": 12 }, variable));
  });

  const cells = s("svg", { width, height, class: "hm-cells", role: "img",
    "aria-label": `${caption || "coupling"}: ${variables.length} variables by ${sites.length} sites` });
  sites.forEach((site, j) => {
    const x = j * CELL + CELL / 2 + 4;
    const y = labelH - 4;
    const label = s("text", { x, y, "font-size": 10, transform: `rotate(-60 ${x} ${y})`,
      class: keptSet.has(site) ? "kept" : null }, site);
    cells.append(label);
    if (keptSet.has(site)) {
      cells.append(s("rect", { x: j * CELL, y: labelH - 3, width: CELL - 1, height: 2, class: "kept-mark" }));
    }
  });
  rows.forEach((row, v) => {
    const peak = Math.max(...row) > 0 ? Math.max(...row) : 1;
    const y = labelH + v * CELL;
    const group = s("g");
    row.forEach((value, j) => {
      group.append(s("rect", { x: j * CELL, y, width: CELL - 1, height: CELL - 1,
        fill: cellColor(value / peak) },
        s("title", {}, `${variables[v]} → ${sites[j]}: ${value.toFixed(4)}`)));
    });
    cells.append(group);
  });

  const scroller = h("div", { class: "hm-scroll", tabindex: "0", role: "region",
    "aria-label": `${caption || "Heatmap"}, scrolls horizontally` }, cells);
  return h("figure", { class: "heatmap" },
    h("div", { class: "hm-frame" }, names, scroller),
    h("figcaption", {},
      `${variables.length} variables × ${sites.length} sites; each row is scaled to its own `
      + "largest weight (white 0 → blue max). Kept sites are bold and underlined. "
      + "Hover a cell for its weight."));
}

const COLORS = { PLOT: "#0b63c5", "DAS (full)": "#b35900", "DAS (guided)": "#6f42c1" };
const SHAPES = { PLOT: "circle", "DAS (full)": "square", "DAS (guided)": "diamond" };

function marker(method, x, y, r = 6) {
  const color = COLORS[method] || "#333";
  if (SHAPES[method] === "square") {
    return s("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r, fill: color });
  }
  if (SHAPES[method] === "diamond") {
    return s("polygon", { points: `${x},${y - r - 1} ${x + r + 1},${y} ${x},${y + r + 1} ${x - r - 1},${y}`, fill: color });
  }
  return s("circle", { cx: x, cy: y, r, fill: color });
}

/**
 * IIA (0–1) against wall time (log x) per method. points: [{method, seconds, iia, label}].
 */
export function scatter(points, { width = 760, height = 380 } = {}) {
  const pad = { left: 56, right: 170, top: 16, bottom: 48 };
  const times = points.map((p) => Math.max(p.seconds, 1e-3));
  let lo = Math.floor(Math.log10(Math.min(...times)));
  let hi = Math.ceil(Math.log10(Math.max(...times)));
  if (hi <= lo) hi = lo + 1;
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const xOf = (t) => pad.left + ((Math.log10(Math.max(t, 1e-3)) - lo) / (hi - lo)) * plotW;
  const yOf = (iia) => pad.top + (1 - iia) * plotH;

  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "scatter",
    role: "img", "aria-label": "IIA against wall time, log scale; the table below lists the points" });
  for (let e = lo; e <= hi; e += 1) {
    const x = xOf(10 ** e);
    svg.append(s("line", { x1: x, x2: x, y1: pad.top, y2: pad.top + plotH, class: "grid" }));
    svg.append(s("text", { x, y: pad.top + plotH + 16, "text-anchor": "middle", "font-size": 11 },
      e >= 0 ? `${10 ** e} s` : `${(10 ** e).toFixed(-e)} s`));
  }
  for (let tick = 0; tick <= 1.0001; tick += 0.25) {
    const y = yOf(tick);
    svg.append(s("line", { x1: pad.left, x2: pad.left + plotW, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: pad.left - 8, y: y + 4, "text-anchor": "end", "font-size": 11 }, tick.toFixed(2)));
  }
  svg.append(s("text", { x: pad.left + plotW / 2, y: height - 8, "text-anchor": "middle", "font-size": 12 },
    "wall time (s, log scale)"));
  svg.append(s("text", { x: 14, y: pad.top + plotH / 2, "text-anchor": "middle", "font-size": 12,
    transform: `rotate(-90 14 ${pad.top + plotH / 2})` }, "test IIA"));
  const placed = []; // label boxes so far: a label that would overlap one moves down
  for (const p of points) {
    const x = xOf(p.seconds);
    const m = marker(p.method, x, yOf(p.iia));
    m.append(s("title", {}, `${p.label} · ${p.method}: IIA ${fmt(p.iia)} in ${fmt(p.seconds, 2)} s`));
    svg.append(m);
    let y = yOf(p.iia) - 7;
    const w = p.label.length * 6.2;
    while (placed.some((b) => Math.abs(b.y - y) < 11 && x + 9 < b.x + b.w && b.x < x + 9 + w)) y += 11;
    placed.push({ x: x + 9, y, w });
    svg.append(s("text", { x: x + 9, y, "font-size": 10, class: "pt-label" }, p.label));
  }
  const methods = [...new Set(points.map((p) => p.method))];
  methods.forEach((method, i) => {
    const y = pad.top + 12 + i * 22;
    svg.append(marker(method, width - pad.right + 24, y));
    svg.append(s("text", { x: width - pad.right + 38, y: y + 4, "font-size": 12 }, method));
  });
  return svg;
}
