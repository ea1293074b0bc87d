// Compare two or more succeeded jobs on the same net and task: test IIA against wall time
// per method (PLOT, DAS full, DAS guided), log x, so a PLOT run and a full-DAS run sit side
// by side. The points are also listed in a table.

import { api } from "../api.js";
import { h, fmt, shortId } from "../dom.js";
import { scatter } from "../charts.js";
import { describeModel, describeTask } from "../jobs.js";
import { findings } from "../finding.js";

/** Per variable, each job's best handle: method, sites, test IIA, verdict. */
function variableTable(ids, results) {
  const rows = [];
  const variables = [...new Set(results.flatMap((r) => r.variables || Object.keys(r.handles || {})))];
  for (const variable of variables) {
    results.forEach((result, i) => {
      const handle = result.handles?.[variable];
      if (!handle) return;
      const finding = findings(result).find((f) => f.variable === variable);
      const das = finding?.method !== "transport" ? result.das?.best?.[variable] : null;
      rows.push(h("tr", {},
        h("th", { scope: "row" }, variable),
        h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(ids[i])}` }, h("code", {}, shortId(ids[i])))),
        h("td", {}, finding?.method || "transport"),
        h("td", {}, h("code", { class: "sites" }, das ? das.site : handle.sites.join(", "))),
        h("td", { class: "num" }, fmt(das ? das.iia_test.overall : handle.iia_test.overall)),
        h("td", {}, finding?.label || "–")));
    });
  }
  return h("div", { class: "table-wrap" }, h("table", { class: "compare-variables" },
    h("caption", {}, "Per variable: each job's best handle"),
    h("thead", {}, h("tr", {}, ["variable", "job", "method", "sites", "test IIA", "verdict"].map((n) => h("th", { scope: "col" }, n)))),
    h("tbody", {}, rows)));
}

/** Per site (any job's transport handle site): which variables each job put there. */
function siteTable(ids, results) {
  const sites = [...new Set(results.flatMap((r) => Object.values(r.handles || {}).flatMap((x) => x.sites)))].sort();
  const rows = sites.map((site) => h("tr", {},
    h("th", { scope: "row" }, h("code", {}, site)),
    results.map((result) => h("td", {}, Object.entries(result.handles || {})
      .filter(([, x]) => x.sites.includes(site))
      .map(([variable, x]) => `${variable} (${fmt(x.weights[x.sites.indexOf(site)], 2)})`).join(", ") || "–"))));
  return h("div", { class: "table-wrap" }, h("table", { class: "compare-sites" },
    h("caption", {}, "Per site: the variables whose handle uses it (weight)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "site"),
      ids.map((id) => h("th", { scope: "col" }, shortId(id))))),
    h("tbody", {}, rows)));
}

function mean(values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

/** One point per method a job ran: PLOT's levels, and DAS when it ran. */
export function pointsOf(jobId, result) {
  const label = shortId(jobId);
  const points = [];
  const handles = Object.values(result.handles || {});
  if (handles.length) {
    const seconds = result.levels.reduce((total, level) => total + level.runtime_s, 0);
    points.push({ method: "PLOT", seconds, iia: mean(handles.map((x) => x.iia_test.overall)), label, jobId });
  }
  if (result.das && Object.keys(result.das.best).length) {
    const best = Object.values(result.das.best);
    points.push({ method: `DAS (${result.das.mode})`, seconds: result.das.runtime_s,
      iia: mean(best.map((run) => run.iia_test.overall)), label, jobId });
  }
  return points;
}

export function renderCompare(main, ids) {
  main.append(h("h1", {}, "Compare jobs"));
  if (ids.length < 2) {
    main.append(h("p", {}, "Pick two or more succeeded jobs on the same net and task in the ",
      h("a", { href: "#/?status=succeeded" }, "job list"), " (tick their boxes), then choose Compare selected."));
    return () => {};
  }
  const box = h("div", { "aria-live": "polite" }, h("p", { class: "hint" }, "Loading…"));
  main.append(box);
  let stopped = false;
  (async () => {
    try {
      const jobs = await Promise.all(ids.map((id) => api(`/v1/jobs/${encodeURIComponent(id)}`)));
      const notDone = jobs.filter((job) => job.status !== "succeeded");
      if (notDone.length) {
        box.replaceChildren(h("p", { class: "form-error", role: "alert" },
          `Only succeeded jobs can be compared; ${notDone.map((j) => `${shortId(j.id)} is ${j.status}`).join(", ")}.`));
        return;
      }
      const keys = new Set(jobs.map((job) => canonical([job.spec.model ?? {}, job.spec.task])));
      if (keys.size > 1) {
        box.replaceChildren(h("p", { class: "form-error", role: "alert" },
          "These jobs are not on the same net and task: "
          + jobs.map((j) => `${shortId(j.id)} (${describeModel(j.spec)}, ${describeTask(j.spec)})`).join("; ") + "."));
        return;
      }
      const results = await Promise.all(ids.map((id) => api(`/v1/jobs/${encodeURIComponent(id)}/result`)));
      if (stopped) return;
      const points = results.flatMap((response, i) => pointsOf(ids[i], response.result));
      const rows = points.map((p) => h("tr", {},
        h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(p.jobId)}` }, h("code", {}, p.label))),
        h("td", {}, p.method), h("td", { class: "num" }, fmt(p.seconds, 2)), h("td", { class: "num" }, fmt(p.iia))));
      box.replaceChildren(
        h("p", {}, `${describeModel(jobs[0].spec)} on ${describeTask(jobs[0].spec)}: mean test IIA over `
          + "variables against the method's wall time (PLOT: its levels; DAS: its trainings)."),
        h("div", { class: "chart-wrap" }, scatter(points)),
        h("div", { class: "table-wrap" }, h("table", { class: "narrow" },
          h("caption", {}, "Points"),
          h("thead", {}, h("tr", {}, ["job", "method", "wall time (s)", "test IIA"].map((n) => h("th", { scope: "col" }, n)))),
          h("tbody", {}, rows))),
        variableTable(ids, results.map((r) => r.result)),
        siteTable(ids, results.map((r) => r.result)));
    } catch (error) {
      if (!stopped && error.status !== 401) {
        box.replaceChildren(h("p", { class: "form-error", role: "alert" }, `Could not compare: ${error.message}.`));
      }
    }
  })();
  return () => { stopped = true; };
}
