// The queue for everyone: each queued job's place in the fair-share order and its owner
// (the caller's own jobs linked, with their names; other owners' jobs show only the owner),
// and per owner how many jobs are queued and running. Refreshed by polling.

import { api } from "../api.js";
import { h, shortId } from "../dom.js";

const POLL_MS = 3000;

export function renderQueue(main) {
  const summary = h("p", { class: "hint", "aria-live": "polite" }, "Loading…");
  const error = h("p", { class: "form-error", role: "alert" });
  const places = h("tbody");
  const owners = h("tbody");
  main.append(
    h("h1", {}, "Queue"),
    h("p", {}, "Queued jobs in the order the scheduler would claim them now (fair share: owners "
      + "with fewer running jobs first, then round robin, then priority and age). Later "
      + "submissions can move a job. Other owners' jobs show only their owner."),
    summary, error,
    h("div", { class: "two-col" },
      h("div", { class: "table-wrap" }, h("table", { class: "queue" },
        h("caption", {}, "Queued jobs in claim order"),
        h("thead", {}, h("tr", {}, ["place", "owner", "job"].map((n) => h("th", { scope: "col" }, n)))),
        places)),
      h("div", { class: "table-wrap" }, h("table", { class: "owners" },
        h("caption", {}, "Jobs per owner"),
        h("thead", {}, h("tr", {}, ["owner", "queued", "running"].map((n) => h("th", { scope: "col" }, n)))),
        owners))));
  let timer = null;
  let stopped = false;
  async function load() {
    try {
      const queue = await api("/v1/jobs/queue");
      if (stopped) return;
      error.textContent = "";
      summary.textContent = queue.queued === 1 ? "1 job queued." : `${queue.queued} jobs queued.`;
      places.replaceChildren(...queue.entries.map((entry) => h("tr", { class: entry.mine ? "mine" : null },
        h("td", { class: "num" }, entry.position + 1),
        h("td", {}, entry.owner, entry.mine ? " (you)" : ""),
        h("td", {}, entry.job_id
          ? h("a", { href: `#/jobs/${encodeURIComponent(entry.job_id)}` }, entry.name || h("code", {}, shortId(entry.job_id)))
          : h("span", { class: "hint" }, "another owner's job")))));
      if (!queue.entries.length) places.append(h("tr", {}, h("td", { colspan: "3", class: "empty" }, "The queue is empty.")));
      owners.replaceChildren(...queue.owners.map((owner) => h("tr", {},
        h("th", { scope: "row" }, owner.owner), h("td", { class: "num" }, owner.queued), h("td", { class: "num" }, owner.running))));
      if (!queue.owners.length) owners.append(h("tr", {}, h("td", { colspan: "3", class: "empty" }, "Nothing queued or running.")));
    } catch (err) {
      if (!stopped && err.status !== 401) error.textContent = `Could not load the queue: ${err.message}.`;
    }
    if (!stopped) timer = setTimeout(load, POLL_MS);
  }
  load();
  return () => { stopped = true; clearTimeout(timer); };
}
