// Inline SVG charts: the coupling heatmap (variables × sites, the look of core/report.py)
// and the IIA-against-wall-time scatter of the compare view.

import { h, s, fmt } from "./dom.js";

const CELL = 18; // px per heatmap cell, as in the HTML report
const ROW_LABEL_PAD = 12;
// sequential scale, light → dark (core/report.py SCALE): [share of the level's largest weight, rgb]
const SCALE = [[0, [247, 251, 255]], [0.25, [198, 219, 239]], [0.5, [107, 174, 214]],
  [0.75, [33, 113, 181]], [1, [8, 48, 107]]];

/** The colour of a weight at `share` (0–1) of the level's largest weight (core/report.py). */
export function cellColor(share) {
  const x = Number.isFinite(share) ? Math.max(0, Math.min(1, share)) : 0;
  for (let i = 1; i < SCALE.length; i += 1) {
    const [hi, hiRgb] = SCALE[i];
    if (x <= hi) {
      const [lo, loRgb] = SCALE[i - 1];
      const t = (x - lo) / (hi - lo);
      const [r, g, b] = loRgb.map((a, k) => Math.round(a + (hiRgb[k] - a) * t));
      return `rgb(${r},${g},${b})`;
    }
  }
  return "rgb(8,48,107)";
}

function textWidth(text, px) {
  return text.length * px * 0.62;
}

let legendCount = 0;

/** The colour bar (0 to the level's largest weight) and the two marks, in words. */
function legend(peak) {
  legendCount += 1;
  const id = `hm-scale-${legendCount}`;
  const barW = 160;
  const svg = s("svg", { width: 560, height: 40, class: "hm-legend", role: "img",
    "aria-label": `colour scale: white 0 to dark blue ${peak.toPrecision(3)}; outlined cells are the variable's handle sites; underlined bold sites are kept for the next level` });
  svg.append(s("defs", {}, s("linearGradient", { id },
    SCALE.map(([at]) => s("stop", { offset: at, "stop-color": cellColor(at) })))));
  svg.append(s("rect", { x: 4, y: 4, width: barW, height: 12, fill: `url(#${id})`, stroke: "#8c959f" }));
  [0, 0.5, 1].forEach((f) => svg.append(s("text", { x: 4 + barW * f, y: 30, "font-size": 10,
    "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, (peak * f).toPrecision(2))));
  svg.append(s("rect", { x: barW + 24, y: 4, width: 12, height: 12, class: "hm-handle-key" }));
  svg.append(s("text", { x: barW + 42, y: 14, "font-size": 11 }, "handle site"));
  svg.append(s("rect", { x: barW + 130, y: 13, width: 12, height: 3, class: "kept-mark" }));
  svg.append(s("text", { x: barW + 148, y: 14, "font-size": 11 }, "kept for the next level (bold)"));
  return svg;
}

/**
 * The (V, S) coupling as a heatmap on one colour scale for the level (0 to its largest
 * weight), with its legend. Sites are labelled with `labels` (their tokens) where given;
 * each variable's handle sites are outlined. Variable names stay in a fixed column; the
 * cells and the rotated site labels scroll horizontally inside a focusable region, so the
 * page never widens. Hovering a cell, or moving over the cells with the arrow keys while
 * the region has focus, shows the cell's details below the heatmap.
 */
export function heatmap({ variables, sites, rows, kept = [], caption, labels = {}, handles = {} }) {
  const keptSet = new Set(kept);
  const names = sites.map((site) => labels[site] || site);
  const longest = textWidth(names.reduce((a, b) => (b.length > a.length ? b : a), ""), 10);
  const labelH = Math.ceil(16 + longest * 0.87); // labels are rotated by 60°
  const labelW = Math.ceil(Math.max(60, ...variables.map((v) => textWidth(v, 12))) + ROW_LABEL_PAD);
  const height = labelH + CELL * variables.length + 4;
  const width = Math.ceil(CELL * sites.length + longest * 0.5 + 12); // the last label leans right
  const peak = Math.max(0, ...rows.map((row) => Math.max(0, ...row))) || 1;

  const nameSvg = s("svg", { width: labelW, height, class: "hm-names", "aria-hidden": "true" });
  variables.forEach((variable, v) => {
    nameSvg.append(s("text", { x: labelW - 6, y: labelH + v * CELL + CELL - 5, "text-anchor": "end",
      "font-size": 12 }, variable));
  });

  const cells = s("svg", { width, height, class: "hm-cells", role: "img",
    "aria-label": `${caption || "coupling"}: ${variables.length} variables by ${sites.length} sites` });
  names.forEach((name, j) => {
    const x = j * CELL + CELL / 2 + 4;
    const y = labelH - 4;
    cells.append(s("text", { x, y, "font-size": 10, transform: `rotate(-60 ${x} ${y})`,
      class: keptSet.has(sites[j]) ? "kept" : null }, name));
    if (keptSet.has(sites[j])) {
      cells.append(s("rect", { x: j * CELL, y: labelH - 3, width: CELL - 1, height: 2, class: "kept-mark" }));
    }
  });
  const detail = h("p", { class: "hm-detail", "aria-live": "polite" },
    "Hover a cell, or focus the heatmap and use the arrow keys, for its details.");
  const describe = (v, j) => {
    const own = (handles[variables[v]] || []).includes(sites[j]);
    return `${variables[v]} → ${names[j]}: weight ${rows[v][j].toFixed(4)}`
      + ` (${(rows[v][j] / peak * 100).toFixed(0)}% of the level's largest)`
      + `${own ? "; a handle site" : ""}${keptSet.has(sites[j]) ? "; kept" : ""}`;
  };
  rows.forEach((row, v) => {
    const own = new Set(handles[variables[v]] || []);
    const y = labelH + v * CELL;
    const group = s("g");
    row.forEach((value, j) => {
      group.append(s("rect", { x: j * CELL, y, width: CELL - 1, height: CELL - 1,
        fill: cellColor(value / peak), class: own.has(sites[j]) ? "hm-handle" : null,
        dataset: { v: String(v), j: String(j) } },
      s("title", {}, describe(v, j))));
    });
    cells.append(group);
  });
  const cursor = s("rect", { x: 0, y: labelH, width: CELL - 1, height: CELL - 1, class: "hm-cursor" });
  cursor.style.display = "none";
  cells.append(cursor);
  let at = null;
  const show = (v, j) => {
    at = [v, j];
    cursor.setAttribute("x", j * CELL);
    cursor.setAttribute("y", labelH + v * CELL);
    cursor.style.display = "";
    detail.textContent = describe(v, j);
  };
  cells.addEventListener("mouseover", (event) => {
    const { v, j } = event.target.dataset || {};
    if (v !== undefined) show(Number(v), Number(j));
  });

  const scroller = h("div", { class: "hm-scroll", tabindex: "0", role: "region",
    "aria-label": `${caption || "Heatmap"}: arrow keys move over the cells, Home and End jump along a row` }, cells);
  scroller.addEventListener("keydown", (event) => {
    const moves = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0] };
    let [v, j] = at || [0, -1];
    if (moves[event.key]) { v += moves[event.key][0]; j += moves[event.key][1]; }
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = sites.length - 1;
    else return;
    event.preventDefault();
    v = Math.max(0, Math.min(variables.length - 1, v));
    j = Math.max(0, Math.min(sites.length - 1, j));
    show(v, j);
    const left = j * CELL;
    if (left < scroller.scrollLeft) scroller.scrollLeft = left;
    else if (left + CELL > scroller.scrollLeft + scroller.clientWidth) scroller.scrollLeft = left + CELL - scroller.clientWidth;
  });
  return h("figure", { class: "heatmap" },
    legend(peak),
    h("div", { class: "hm-frame" }, nameSvg, scroller),
    detail,
    h("figcaption", {},
      `${variables.length} variables × ${sites.length} sites; one colour scale for the level `
      + `(white 0 → dark blue ${peak.toPrecision(3)}, the largest weight). Outlined cells are each `
      + "variable's handle sites; kept sites are bold and underlined."));
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
