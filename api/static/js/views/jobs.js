// The job list: the signed-in owner's jobs (an admin's: everyone's), filtered by status,
// refreshed by polling; succeeded jobs can be picked for the compare view.

import { api } from "../api.js";
import { h, fmtDuration, secondsBetween, shortId } from "../dom.js";
import { STATUSES, describeModel, describeTask, levelText, progressBar, statusBadge, tagList } from "../jobs.js";

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
    h("td", { class: "job" },
      h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, class: "job-link" },
        job.name ? h("span", { class: "job-name" }, job.name) : null,
        h("code", {}, shortId(job.id))),
      job.tags?.length ? tagList(job.tags) : null,
      h("span", { class: "job-what" }, `${describeModel(job.spec)} · ${describeTask(job.spec)}`)),
    h("td", {}, statusBadge(job)),
    h("td", {}, job.owner),
    h("td", { class: "num" }, levelText(job)),
    h("td", { class: "bar" }, progressBar(job, `progress of job ${shortId(job.id)}`)),
    h("td", { class: "num" }, job.queue_position ?? "–"),
    h("td", { class: "num" }, fmtDuration(secondsBetween(job.created_at))),
    h("td", { class: "num" }, duration));
}

export function renderJobs(main, params) {
  const status = STATUSES.includes(params.get("status")) ? params.get("status") : "";
  const tag = (params.get("tag") || "").trim();
  const name = (params.get("name") || "").trim();
  let offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
  const picked = new Set();
  const select = h("select", { id: "status-filter", name: "status" },
    h("option", { value: "" }, "all"),
    STATUSES.map((name) => h("option", { value: name, selected: name === status }, name)));
  const tagInput = h("input", { id: "tag-filter", name: "tag", type: "search", value: tag, size: 12, placeholder: "any" });
  const nameInput = h("input", { id: "name-filter", name: "name", type: "search", value: name, size: 14, placeholder: "any" });
  const go = () => {
    const query = new URLSearchParams();
    if (select.value) query.set("status", select.value);
    if (tagInput.value.trim()) query.set("tag", tagInput.value.trim());
    if (nameInput.value.trim()) query.set("name", nameInput.value.trim());
    location.hash = query.size ? `#/?${query}` : "#/";
  };
  select.addEventListener("change", go);
  for (const input of [tagInput, nameInput]) {
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") go(); });
    input.addEventListener("change", go);
  }
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
      h("label", { for: "status-filter" }, "Status"), select,
      h("label", { for: "tag-filter" }, "Tag"), tagInput,
      h("label", { for: "name-filter" }, "Name"), nameInput, compare,
      h("span", { class: "hint" }, "Tick two or more succeeded jobs on the same net and task to compare them.")),
    error,
    h("div", { class: "table-wrap" }, h("table", { class: "jobs" },
      h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
      h("thead", {}, h("tr", {},
        [["", "pick"], ["Job"], ["Status"], ["Owner"], ["Level", "num"], ["Progress"], ["Queue", "num"], ["Age", "num"], ["Duration", "num"]]
          .map(([title, cls]) => h("th", { scope: "col", class: cls || null }, title ? title : h("span", { class: "visually-hidden" }, "Pick"))))),
      body)),
    h("div", { class: "pager" }, prev, summary, next));

  let timer = null;
  let stopped = false;
  async function load() {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status) query.set("status", status);
    if (tag) query.set("tag", tag);
    if (name) query.set("name", name);
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
        body.append(h("tr", {}, h("td", { colspan: "9", class: "empty" },
          status || tag || name ? "No jobs match these filters." : "No jobs yet. Submit one to get started.")));
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
