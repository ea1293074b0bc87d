// Submit a job from the page: paste or upload a spec. JSON is parsed here; YAML is sent to
// POST /v1/specs/yaml (yaml.safe_load on the server), then the JSON goes to POST /v1/jobs,
// whose 422 names each bad field: those errors are listed next to the spec, with the line.

import { api } from "../api.js";
import { h } from "../dom.js";

const EXAMPLE = `# A small job on the built-in task (trains its default net on first use).
task:
  builtin: hierarchical_equality
pairs: {fit: 200, calibration: 200, test: 200}
levels:
  - granularity: neuron
coupling:
  epsilons: [0.03]
calibration:
  top_k: [1, 2]
  strengths: [1.0, 2.0]
`;

/** "a.b.0: msg; c: msg" (the service's 422 message) as [{path, message}]. */
export function splitFieldErrors(error) {
  const parts = (error.message || "").split(/;\s+(?=[\w.()\-[\]]+: )/);
  const items = parts.map((part) => {
    const match = part.match(/^([\w.()\-[\]]+): (.*)$/s);
    return match ? { path: match[1], message: match[2] } : { path: error.where, message: part };
  });
  return items.length ? items : [{ path: error.where, message: error.message }];
}

/** The 1-based line where the path's last named key appears in the text, or null. */
export function lineOf(text, path) {
  if (!path) return null;
  const keys = path.split(".").filter((part) => !/^\d+$/.test(part));
  const lines = text.split("\n");
  let from = 0;
  let found = null;
  for (const key of keys) { // walk down: each key searched after its parent's line
    const pattern = new RegExp(`(^|[\\s{,"'])${key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*:`);
    const index = lines.findIndex((line, i) => i >= from && pattern.test(line));
    if (index < 0) break;
    found = index + 1;
    from = index;
  }
  return found;
}

export function renderSubmit(main) {
  const text = h("textarea", { id: "spec-text", name: "spec", rows: "20", spellcheck: "false",
    "aria-describedby": "spec-help spec-errors" });
  text.value = EXAMPLE;
  const file = h("input", { id: "spec-file", type: "file", accept: ".yaml,.yml,.json,application/json,text/yaml" });
  const errors = h("div", { id: "spec-errors", class: "spec-errors", "aria-live": "assertive" });
  const submit = h("button", { type: "submit", id: "submit-spec" }, "Submit job");

  file.addEventListener("change", async () => {
    if (file.files.length) text.value = await file.files[0].text();
  });

  // Select a line of the spec and scroll it into view (the textarea scrolls to a selection).
  function selectLine(line) {
    const lines = text.value.split("\n");
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    text.focus();
    text.setSelectionRange(start, start + lines[line - 1].length);
    const lineHeight = parseFloat(getComputedStyle(text).lineHeight) || 18;
    text.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }

  function showErrors(items, title) {
    errors.replaceChildren(
      h("h2", { id: "spec-errors-title" }, title),
      h("ul", {}, items.map(({ path, message }) => {
        const line = lineOf(text.value, path);
        return h("li", { class: "field-error", dataset: { path: path || "" } },
          path ? h("code", {}, path) : null, path ? ": " : "", message,
          line ? h("button", { type: "button", class: "line link", onclick: () => selectLine(line) },
            `line ${line}`) : null);
      })));
    text.setAttribute("aria-invalid", "true");
    errors.querySelector("h2").setAttribute("tabindex", "-1");
    errors.querySelector("h2").focus();
  }

  async function toJson(source) {
    const trimmed = source.trim();
    if (!trimmed) throw { items: [{ path: null, message: "the spec is empty" }], title: "Nothing to submit" };
    if (trimmed.startsWith("{")) {
      try {
        return JSON.parse(trimmed);
      } catch (error) {
        throw { items: [{ path: null, message: `not valid JSON: ${error.message}` }], title: "The spec is not valid JSON" };
      }
    }
    try {
      return (await api("/v1/specs/yaml", { method: "POST", body: source, contentType: "application/yaml" })).spec;
    } catch (error) {
      throw { items: [{ path: error.where, message: error.message }], title: "The spec is not valid YAML" };
    }
  }

  const form = h("form", { class: "submit-form", "aria-labelledby": "submit-title" },
    h("div", { class: "spec-col" },
      h("label", { for: "spec-text" }, "Job spec (JSON or YAML)"),
      text,
      h("p", { id: "spec-help", class: "hint" },
        "JSON is parsed in the browser; YAML is turned into JSON by the service "
        + "(yaml.safe_load, no anchors or aliases). The service validates the spec."),
      h("div", { class: "actions" },
        h("label", { for: "spec-file" }, "Or load a file"), file, submit)),
    h("div", { class: "errors-col" }, errors));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    text.removeAttribute("aria-invalid");
    submit.disabled = true;
    try {
      const spec = await toJson(text.value);
      const job = await api("/v1/jobs", { method: "POST", body: spec });
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (error) {
      if (error.items) showErrors(error.items, error.title);
      else if (error.status === 422) showErrors(splitFieldErrors(error), "The service refused the spec");
      else if (error.status !== 401) showErrors([{ path: error.where, message: error.message }], "Could not submit");
    } finally {
      submit.disabled = false;
    }
  });

  main.append(h("h1", { id: "submit-title" }, "Submit a job"), form);
  return () => {};
}
