// The job list: the signed-in owner's jobs (an admin's: everyone's), filtered by status,
// refreshed by polling; succeeded jobs can be picked for the compare view.

import { api } from "../api.js";
import { h, fmtDuration, secondsBetween, shortId } from "../dom.js";
import { STATUSES, describeModel, describeTask, levelText, progressBar, statusBadge } from "../jobs.js";

const POLL_MS = 2000;
const PAGE = 50;

function row(job, picked, onPick) {
  const pick = job.status === "succeeded"
    ? h("input", { type: "checkbox", "aria-label": `compare job ${shortId(job.id)}`,
      checked: picked.has(job.id), onchange: (e) => onPick(job.id, e.target.checked) })
    : "";
  const duration = job.started_at ? fmtDuration(secondsBetween(job.started_at, job.finished_at)) : "–";
  return h("tr", { dataset: { jobId: job.id, status: job.status } },
    h("td", { class: "pick" }, pick),
    h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "job-link" },
      h("code", {}, shortId(job.id)))),
    h("td", {}, statusBadge(job)),
    h("td", {}, job.owner),
    h("td", {}, describeModel(job.spec)),
    h("td", {}, describeTask(job.spec)),
    h("td", { class: "num" }, levelText(job)),
    h("td", { class: "bar" }, progressBar(job, `progress of job ${shortId(job.id)}`)),
    h("td", { class: "num" }, job.queue_position ?? "–"),
    h("td", { class: "num" }, fmtDuration(secondsBetween(job.created_at))),
    h("td", { class: "num" }, duration));
}

export function renderJobs(main, params) {
  const status = STATUSES.includes(params.get("status")) ? params.get("status") : "";
  let offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
  const picked = new Set();
  const select = h("select", { id: "status-filter", name: "status" },
    h("option", { value: "" }, "all"),
    STATUSES.map((name) => h("option", { value: name, selected: name === status }, name)));
  select.addEventListener("change", () => {
    location.hash = select.value ? `#/?status=${select.value}` : "#/";
  });
  const compare = h("button", { type: "button", id: "compare-picked", disabled: true }, "Compare selected");
  compare.addEventListener("click", () => {
    location.hash = `#/compare?ids=${[...picked].map(encodeURIComponent).join(",")}`;
  });
  const body = h("tbody");
  const summary = h("p", { class: "hint", id: "list-summary", "aria-live": "polite" }, "Loading…");
  const error = h("p", { class: "form-error", role: "alert" });
  const prev = h("button", { type: "button", class: "secondary" }, "Newer");
  const next = h("button", { type: "button", class: "secondary" }, "Older");
  const onPick = (id, on) => {
    if (on) picked.add(id); else picked.delete(id);
    compare.disabled = picked.size < 2;
    compare.textContent = picked.size ? `Compare selected (${picked.size})` : "Compare selected";
  };

  main.append(
    h("div", { class: "title-row" }, h("h1", {}, "Jobs"),
      h("a", { class: "button", href: "#/submit" }, "Submit a job")),
    h("div", { class: "toolbar" },
      h("label", { for: "status-filter" }, "Status"), select, compare,
      h("span", { class: "hint" }, "Tick two or more succeeded jobs on the same net and task to compare them.")),
    error,
    h("div", { class: "table-wrap" }, h("table", { class: "jobs" },
      h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
      h("thead", {}, h("tr", {},
        ["", "Job", "Status", "Owner", "Model", "Task", "Level", "Progress", "Queue", "Age", "Duration"]
          .map((name) => h("th", { scope: "col" }, name)))),
      body)),
    h("div", { class: "pager" }, prev, summary, next));

  let timer = null;
  let stopped = false;
  async function load() {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status) query.set("status", status);
    try {
      const page = await api(`/v1/jobs?${query}`);
      if (stopped) return;
      error.textContent = "";
      // keep keyboard focus on the same job's link or checkbox across a refresh
      const active = document.activeElement;
      const focusedJob = body.contains(active) ? active.closest("tr")?.dataset.jobId : null;
      const focusedTag = focusedJob ? active.tagName : null;
      body.replaceChildren(...page.items.map((job) => row(job, picked, onPick)));
      if (focusedJob) {
        const again = [...body.querySelectorAll("tr")].find((tr) => tr.dataset.jobId === focusedJob);
        again?.querySelector(focusedTag === "INPUT" ? "input" : "a")?.focus();
      }
      if (!page.items.length) {
        body.append(h("tr", {}, h("td", { colspan: "11", class: "empty" },
          status ? `No ${status} jobs.` : "No jobs yet. Submit one to get started.")));
      }
      const last = Math.min(page.total, offset + page.items.length);
      summary.textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "0 jobs";
      prev.disabled = offset === 0;
      next.disabled = last >= page.total;
    } catch (err) {
      if (!stopped && err.status !== 401) error.textContent = `Could not load the jobs: ${err.message}.`;
    }
    if (!stopped) timer = setTimeout(load, POLL_MS);
  }
  prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); clearTimeout(timer); load(); });
  next.addEventListener("click", () => { offset += PAGE; clearTimeout(timer); load(); });
  load();
  return () => { stopped = true; clearTimeout(timer); };
}
