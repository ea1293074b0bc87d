// One job: status and progress (live from its event stream, with polling as a fallback),
// the error in plain words, cancel, the spec, and the result: handles with their controls,
// timings, DAS runs and one coupling heatmap (with its diagnostics) per level; result.json
// can be downloaded.

import { api, fetchRaw, followEvents } from "../api.js";
import { h, fmt, fmtInt, fmtDuration, fmtTime, iiaText, secondsBetween, shortId } from "../dom.js";
import { heatmap } from "../charts.js";
import { findings, glossary, summarySection } from "../finding.js";
import { TERMINAL, describeModel, describeTask, levelText, plainError, progressBar, statusBadge, tagList } from "../jobs.js";

const POLL_MS = 3000;

function table(caption, headers, rows, cls = "") {
  return h("div", { class: "table-wrap" }, h("table", { class: cls },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows)));
}

function num(value) {
  return h("td", { class: "num" }, value);
}

function handleRows(handles, withLevel, methods = null) {
  return Object.entries(handles).map(([variable, handle]) => h("tr", {},
    h("th", { scope: "row" }, variable),
    withLevel ? num(handle.level) : null,
    h("td", {}, h("code", { class: "sites" }, handle.sites.join(", "))),
    num(handle.k), num(fmt(handle.strength, 2)), num(fmt(handle.epsilon, 4)),
    num(fmt(handle.iia_calibration)),
    num(fmt(handle.iia_test.overall)), num(fmt(handle.iia_test.sensitivity)),
    num(fmt(handle.iia_test.invariance)),
    h("td", { class: "num", title: iiaText(handle.hard_iia_test) }, fmt(handle.hard_iia_test.overall)),
    methods ? h("td", {}, methods[variable] || "transport") : null));
}

const HANDLE_HEADERS = ["handle sites", "k", "λ", "ε", "IIA calibration", "IIA test",
  "sensi\u00ADtivity", "invari\u00ADance", "hard IIA test"]; // soft hyphens: narrow screens; hard: its overall IIA (all three on hover)

function timingText(timing) {
  return Object.entries(timing || {})
    .map(([name, seconds]) => `${name.replace(/_s$/, "")} ${fmt(seconds, 2)} s`).join(", ");
}

function massText(mass) {
  return mass ? `${fmt(mass.real_mass)} / ${fmt(mass.control_mass)} / ${fmt(mass.uniform_mass)}` : "–";
}

// The controls beside the handles: random-net IIA, kept-site mass against permuted labels,
// the full-vector interchange at the handle's location and after it.
function controlsSection(result) {
  const controls = result.controls;
  if (!controls) return h("p", { class: "hint" }, "Controls were turned off for this job.");
  const randomNet = controls.random_net;
  const rows = Object.entries(result.handles || {}).map(([variable, handle]) => {
    const control = randomNet?.handles?.[variable];
    const depth = controls.depth?.[variable] || [];
    return h("tr", {},
      h("th", { scope: "row" }, variable), num(fmt(handle.iia_test.overall)),
      num(control ? fmt(control.iia_test.overall) : "–"),
      num(massText(controls.label_permutation?.[variable])),
      h("td", {}, depth.map((point) => `${point.location}${point.in_handle ? "*" : ""} ${fmt(point.iia_test)}`).join(", ") || "–"));
  });
  return h("section", { "aria-labelledby": "controls-title" },
    h("h2", { id: "controls-title" }, "Controls"),
    h("p", {}, `Test base inputs right: real net ${fmt(controls.base_accuracy)}`
      + (randomNet ? `, random net (${randomNet.weights}) ${fmt(randomNet.base_accuracy)}` : "") + "."),
    (controls.warnings || []).map((warning) => h("p", { class: "warn" }, `⚠ ${warning}`)),
    table("Handles against their controls", ["variable", "IIA test", "random-net IIA test",
      "kept mass: real / permuted / uniform", "full-vector IIA (* handle location)"], rows, "controls"));
}

function diagnosticsTable(level) {
  const diagnostics = level.diagnostics;
  if (!diagnostics) return null;
  const rows = Object.entries(diagnostics.variables).map(([variable, d]) => h("tr", {},
    h("th", { scope: "row" }, variable), num(fmt(d.entropy)), h("td", {}, h("code", {}, d.best_site)),
    num(fmt(d.margin, 4)), num(fmt(d.cost_margin, 4)), num(fmt(d.null_share_kept)),
    num(massText(level.label_permutation?.[variable]))));
  return h("div", { class: "diag" },
    table(`Level ${level.index} coupling diagnostics`, ["variable", "row entropy (1 = uniform)",
      "best site", "mass margin", "cost margin", "null share of kept", "kept mass: real / permuted / uniform"],
    rows, "diagnostics"),
    glossary());
}

function levelSection(level) {
  const handles = level.handles || {};
  return h("section", { class: "level", "aria-labelledby": `level-${level.index}` },
    h("h3", { id: `level-${level.index}` },
      `Level ${level.index}: ${level.granularity} (${level.sites.length} sites)`),
    h("p", {}, `${fmt(level.runtime_s, 2)} s (${timingText(level.timing)}); `
      + `${fmtInt(level.forward_passes)} forward passes.`),
    h("p", {}, "Kept for the next level: ", h("code", { class: "sites" }, level.kept.join(", ") || "none")),
    (level.warnings || []).map((warning) => h("p", { class: "warn" }, `⚠ ${warning}`)),
    heatmap({ variables: level.variables, sites: level.sites, rows: level.coupling,
      kept: level.kept, caption: `Level ${level.index} coupling`, labels: level.site_labels || {},
      handles: Object.fromEntries(Object.entries(handles).map(([v, x]) => [v, x.sites])) }),
    Object.keys(handles).length
      ? table(`Level ${level.index} handles`, ["variable", ...HANDLE_HEADERS], handleRows(handles, false))
      : h("p", { class: "hint" }, "No handles at this level."),
    diagnosticsTable(level));
}

function dasSection(das) {
  if (!das) return null;
  const best = new Set(Object.values(das.best).map((run) => `${run.variable}|${run.site}|${run.dim}`));
  const rows = das.runs.map((run) => h("tr", { class: best.has(`${run.variable}|${run.site}|${run.dim}`) ? "best" : "" },
    h("th", { scope: "row" }, run.variable), h("td", {}, h("code", {}, run.site)), num(run.dim),
    num(fmt(run.iia_calibration)), num(fmt(run.iia_test.overall)),
    num(fmt(run.iia_test.sensitivity)), num(fmt(run.iia_test.invariance)),
    num(run.epochs), num(fmt(run.runtime_s, 2)),
    h("td", {}, best.has(`${run.variable}|${run.site}|${run.dim}`) ? "best" : "")));
  return h("section", { "aria-labelledby": "das-title" },
    h("h2", { id: "das-title" }, `DAS (${das.mode})`),
    h("p", {}, `${fmtInt(das.trainings)} trainings, ${fmtInt(das.forward_passes)} forward passes `
      + `in ${fmt(das.runtime_s, 2)} s. The best run per variable (by calibration IIA) is marked.`),
    table("DAS runs: IIA per site and dimension", ["variable", "site", "dim", "IIA calibration",
      "IIA test", "sensitivity", "invariance", "epochs", "s", ""], rows, "das"));
}

function resultSection(result, jobId) {
  const timing = Object.entries(result.timing || {}).map(([name, seconds]) =>
    h("tr", {}, h("th", { scope: "row" }, name.replace(/_s$/, "")), num(fmt(seconds, 3))));
  const methods = Object.fromEntries(findings(result).map((f) => [f.variable, f.method]));
  const file = URL.createObjectURL(new Blob([JSON.stringify({ job_id: jobId, result }, null, 2)],
    { type: "application/json" }));
  return h("div", { class: "result" },
    summarySection(result),
    h("h2", {}, "Result"),
    h("p", {}, `${fmtInt(result.forward_passes)} forward passes in ${fmt(result.timing?.total_s, 2)} s `
      + `on ${result.device}; net ${result.net?.path ?? result.net?.arch ?? ""}. `,
    h("a", { href: file, download: `result-${jobId}.json`, class: "result-link" }, "result.json"),
    " (the API's ", h("code", {}, `GET /v1/jobs/${jobId}/result`), ")."),
    h("div", { class: "two-col" },
      table("Best handle per variable", ["variable", "level", ...HANDLE_HEADERS, "best method"],
        handleRows(result.handles || {}, true, methods)),
      table("Timing (s)", ["stage", "seconds"], timing, "narrow")),
    controlsSection(result),
    dasSection(result.das),
    h("h2", {}, "Levels"),
    result.levels.map(levelSection));
}

async function download(jobId, button, note) {
  button.disabled = true;
  try {
    const blob = await (await fetchRaw(`/v1/jobs/${encodeURIComponent(jobId)}/result`)).blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `result-${jobId}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    note.textContent = `Could not download the result: ${error.message}.`;
  } finally {
    button.disabled = false;
  }
}

export function renderJob(main, jobId) {
  const controller = new AbortController();
  const head = h("div", { class: "title-row" }, h("h1", {}, `Job ${shortId(jobId)}`));
  const statusBox = h("section", { class: "card status-card", "aria-label": "Status", "aria-busy": "true" }, "Loading…");
  const announce = h("p", { class: "visually-hidden", "aria-live": "polite" }); // status changes only
  const note = h("p", { class: "form-error", role: "alert" });
  const specBox = h("details", { class: "spec" });
  const resultBox = h("div", {});
  const logList = h("ol", { class: "log-lines" });
  const logNote = h("p", { class: "hint" });
  const logBox = h("details", { class: "log", open: true },
    h("summary", {}, "Log"), logNote, h("div", { class: "log-scroll", tabindex: "0", role: "region", "aria-label": "Job log" }, logList));
  main.append(h("p", {}, h("a", { href: "#/" }, "← All jobs")), head, note, announce, statusBox, logBox, specBox, resultBox);

  let logAt = 0;
  let logBusy = false;
  let logAgain = false;
  async function refreshLog(force = false) {
    if (logBusy) { logAgain = logAgain || force; return; }
    if (!force && Date.now() - logAt < 1500) return;
    logBusy = true;
    logAt = Date.now();
    try {
      const log = await api(`/v1/jobs/${encodeURIComponent(jobId)}/log`, { signal: controller.signal });
      logList.replaceChildren(...log.lines.map((line) => h("li", { class: `log-${line.level}` },
        h("time", { datetime: line.ts || "" }, line.ts ? fmtTime(line.ts) : "–"), " ",
        h("span", { class: "log-kind" }, line.kind), " ", line.text)));
      logNote.textContent = log.events === "ok" ? `${log.lines.length} lines: the job's lifecycle and its events.`
        : "The event bus could not be read: only the job's lifecycle is shown.";
    } catch (error) {
      if (error.name !== "AbortError") logNote.textContent = `Could not load the log: ${error.message}.`;
    } finally {
      logBusy = false;
      if (logAgain && !controller.signal.aborted) { logAgain = false; refreshLog(true); }
    }
  }

  let job = null;
  let timer = null;
  let streaming = false;
  let streams = 0; // the poll takes over if the stream keeps dropping
  let resultShown = false;
  let refreshQueued = false;

  function renderStatus() {
    const actions = h("div", { class: "actions" });
    if (!TERMINAL.has(job.status)) {
      const cancel = h("button", { type: "button", class: "danger", id: "cancel-job",
        disabled: job.cancel_requested }, job.cancel_requested ? "Cancelling…" : "Cancel job");
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          job = await api(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
          renderStatus();
        } catch (error) {
          note.textContent = `Could not cancel: ${error.message}.`;
          cancel.disabled = false;
        }
      });
      actions.append(cancel);
    }
    if (job.status === "succeeded") {
      const button = h("button", { type: "button", id: "download-result" }, "Download result.json");
      button.addEventListener("click", () => download(jobId, button, note));
      actions.append(button);
    }
    const facts = [
      ["Status", statusBadge(job)], ["Owner", job.owner], ["Model", describeModel(job.spec)],
      ["Task", describeTask(job.spec)], ["Level", levelText(job)],
      ["Stage", job.progress.stage && !TERMINAL.has(job.status) ? `${job.progress.stage} ${job.progress.done}/${job.progress.total}` : "–"],
      ["Queue position", job.queue_position ?? "–"],
      ["ETA (stage)", job.eta_s !== null && job.eta_s !== undefined ? fmtDuration(job.eta_s) : "–"],
      ["Submitted", fmtTime(job.created_at)],
      ["Duration", job.started_at ? fmtDuration(secondsBetween(job.started_at, job.finished_at)) : "–"],
      ["Attempt", job.attempt], ["Priority", job.priority],
    ];
    const children = [
      h("dl", { class: "facts" }, facts.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value)))),
      progressBar(job, "job progress"),
      actions,
    ];
    if (job.status === "cancelled") {
      children.push(h("p", { class: "cancelled-note" }, "Cancelled"
        + (job.error?.message ? ` (${job.error.message})` : "")
        + ". Levels finished before it stopped are kept."));
    } else if (job.error) {
      const { lead, detail } = plainError(job.error);
      children.push(h("div", { class: "error-box", role: "alert" }, h("strong", {}, lead), h("p", {}, detail)));
    }
    const focusedId = statusBox.contains(document.activeElement) ? document.activeElement.id : "";
    statusBox.setAttribute("aria-busy", "false");
    statusBox.replaceChildren(...children);
    if (focusedId) document.getElementById(focusedId)?.focus(); // a refresh keeps keyboard focus
    if (announce.dataset.status !== job.status) {
      announce.dataset.status = job.status;
      announce.textContent = `Job ${job.status}.`;
    }
  }

  async function showResult() {
    resultShown = true;
    resultBox.replaceChildren(h("p", { class: "hint" }, "Loading the result…"));
    try {
      const response = await api(`/v1/jobs/${encodeURIComponent(jobId)}/result`, { signal: controller.signal });
      resultBox.replaceChildren(resultSection(response.result, jobId));
    } catch (error) {
      if (error.name !== "AbortError") resultBox.replaceChildren(h("p", { class: "form-error" }, `Could not load the result: ${error.message}.`));
    }
  }

  async function refresh() {
    try {
      job = await api(`/v1/jobs/${encodeURIComponent(jobId)}`, { signal: controller.signal });
    } catch (error) {
      if (error.name === "AbortError") return;
      statusBox.replaceChildren(h("p", { class: "form-error", role: "alert" },
        error.status === 404 ? "There is no such job (or it belongs to another owner)." : `Could not load the job: ${error.message}.`));
      return;
    }
    renderStatus();
    if (job.name && !head.dataset.named) {
      head.dataset.named = "1";
      head.replaceChildren(h("h1", {}, job.name, " ", h("span", { class: "job-id" }, shortId(jobId))));
    }
    if (job.tags?.length && !head.querySelector(".tags")) head.append(tagList(job.tags));
    refreshLog(TERMINAL.has(job.status));
    if (!specBox.childElementCount) {
      specBox.append(h("summary", {}, "Spec"), h("pre", {}, JSON.stringify(job.spec, null, 2)));
    }
    if (job.status === "succeeded" && !resultShown) showResult();
    if (!TERMINAL.has(job.status) && !streaming && streams < 5) stream();
  }

  // An event means the job row changed: re-read it (at most one read in flight).
  function onEvent() {
    if (refreshQueued) return;
    refreshQueued = true;
    setTimeout(() => { refreshQueued = false; refresh(); }, 150);
  }

  async function stream() {
    streaming = true;
    streams += 1;
    try {
      await followEvents(jobId, onEvent, controller.signal);
    } catch {
      // the poll below keeps the page current
    }
    streaming = false;
    if (!controller.signal.aborted) refresh();
  }

  async function poll() {
    await refresh();
    if (!controller.signal.aborted && (!job || !TERMINAL.has(job.status))) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => { controller.abort(); clearTimeout(timer); };
}
