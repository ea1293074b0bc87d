// Small DOM and formatting helpers: every piece of text goes in through textContent.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.setAttribute("class", value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  return node;
}

/** h("button", {type: "button", onclick}, "Cancel") */
export function h(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function fmt(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value)
    ? "–" : Number(value).toFixed(digits);
}

export function fmtInt(value) {
  return value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US");
}

/** 0.4 s, 12 s, 3 min 4 s, 2 h 5 min */
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d`;
}

export function secondsBetween(start, end) {
  if (!start) return null;
  return Math.max(0, ((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000);
}

export function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export function shortId(id) {
  return id.length > 12 ? id.slice(0, 8) : id;
}

/** "soft IIA 0.912 (sensitivity 0.85, invariance 0.97)" parts for an IIA record. */
export function iiaText(iia) {
  if (!iia) return "–";
  return `${fmt(iia.overall)} (sens ${fmt(iia.sensitivity)}, inv ${fmt(iia.invariance)})`;
}
