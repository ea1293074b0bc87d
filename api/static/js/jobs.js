// What the dashboard says about a job: its net and task in words, its progress as one
// fraction, its error in plain words, and the small widgets that show them.

import { h } from "./dom.js";

export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function describeModel(spec) {
  const model = spec.model || {};
  if (model.id) return `model ${model.id}`;
  if (model.path) return model.path;
  return "default net";
}

export function describeTask(spec) {
  const task = spec.task || {};
  if (task.builtin) return task.builtin;
  if (task.dataset) return `dataset ${task.dataset}`;
  return "–";
}

/** Levels in the spec; null when the spec leaves them to the task's defaults. */
export function levelCount(spec) {
  return Array.isArray(spec.levels) ? spec.levels.length : null;
}

const highest = new Map(); // job id → the highest fraction shown, so bars never move back

/** Progress in [0, 1]: finished levels plus the share of the current stage. */
export function progressOf(job) {
  if (job.status === "succeeded") return 1;
  let fraction = 0;
  const stage = job.progress.total > 0 ? job.progress.done / job.progress.total : 0;
  const levels = levelCount(job.spec);
  if (job.status === "running") {
    fraction = levels ? Math.min(1, (job.levels_done + stage) / (levels + 0.0001)) : stage * 0.99;
    fraction = Math.min(fraction, 0.99); // 100% only once the result is in
  }
  const best = Math.max(fraction, highest.get(job.id) ?? 0);
  highest.set(job.id, best);
  return best;
}

export function statusBadge(job) {
  const label = job.cancel_requested && job.status === "running" ? "cancelling" : job.status;
  return h("span", { class: `badge status-${job.status}` }, label);
}

export function progressBar(job, label) {
  const percent = Math.round(progressOf(job) * 100);
  const bar = h("div", {
    class: `progress status-${job.status}`, role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": "100", "aria-valuenow": String(percent), "aria-label": label,
  }, h("div", { class: "fill" }));
  bar.firstChild.style.width = `${percent}%`;
  return h("div", { class: "progress-cell" }, bar, h("span", { class: "pct" }, `${percent}%`));
}

export function levelText(job) {
  const levels = levelCount(job.spec);
  if (job.current_level === null || job.current_level === undefined) {
    return job.levels_done ? `${job.levels_done}${levels ? ` / ${levels}` : ""} done` : "–";
  }
  return `${job.current_level + 1}${levels ? ` / ${levels}` : ""}`;
}

const KINDS = {
  SpecError: "The job spec is not valid",
  DatasetError: "The dataset could not be used",
  ModelLoadError: "The net could not be loaded",
  TaskError: "The task could not be set up",
  SiteError: "A site in the spec does not exist in this net",
  SolverError: "The transport solver did not converge",
  LeaseExpired: "The worker running this job stopped responding",
  InternalError: "The service hit an internal error",
};

/** An error record {type, message, where} as a sentence a person can act on. */
export function plainError(error) {
  const lead = KINDS[error.type] || `The job stopped with ${error.type || "an error"}`;
  const where = error.where ? ` (at ${error.where})` : "";
  return { lead: `${lead}${where}.`, detail: error.message || "" };
}

export function tagList(tags) {
  return h("ul", { class: "tags", "aria-label": "tags" }, tags.map((tag) => h("li", { class: "tag" }, tag)));
}
