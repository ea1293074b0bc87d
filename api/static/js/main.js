// The dashboard shell: sign-in with an API key (sessionStorage only), the hash router, and
// the one "current view" whose timers and streams are stopped when the route changes.

import { api, getKey, setKey, keyId, setUnauthorizedHandler } from "./api.js";
import { h, clear } from "./dom.js";
import { renderJobs } from "./views/jobs.js";
import { renderJob } from "./views/job.js";
import { renderSubmit } from "./views/submit.js";
import { renderCompare } from "./views/compare.js";
import { renderQueue } from "./views/queue.js";

const main = document.getElementById("main");
let stopView = () => {};
let signInNotice = "";

function setSignedIn(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  document.getElementById("who-key").textContent = signedIn ? `key ${keyId(getKey())}` : "";
}

function signOut(notice = "") {
  setKey(null);
  signInNotice = notice;
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  else route();
}

setUnauthorizedHandler((error) => signOut(`Signed out: ${error.message}.`));
document.getElementById("sign-out").addEventListener("click", () => signOut("Signed out."));

function renderSignIn() {
  setSignedIn(false);
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off",
    required: true, spellcheck: "false", placeholder: "plot_…", "aria-describedby": "key-help sign-in-error" });
  const message = h("p", { id: "sign-in-error", class: "form-error", role: "alert" }, signInNotice);
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { id: "key-help", class: "hint" }, "A key from ", h("code", {}, "plot keys create --owner NAME"),
      " (or the admin key ", h("code", {}, "plot serve"), " printed on first start). ",
      "It is kept in this tab's session storage only."),
    message, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    message.textContent = "";
    button.disabled = true;
    try {
      await api("/v1/jobs?limit=1", { token });
      setKey(token);
      signInNotice = "";
      route();
    } catch (error) {
      message.textContent = error.status === 401
        ? `That key was not accepted: ${error.message}.`
        : `Could not sign in: ${error.message}.`;
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.replaceChildren(form);
  input.focus();
  return () => {};
}

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  return { path, params: new URLSearchParams(query) };
}

function markNav(path) {
  for (const link of document.querySelectorAll("#nav a")) {
    const target = link.getAttribute("href").slice(1);
    const current = target === "/" ? path === "/" || path.startsWith("/jobs") : path.startsWith(target);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  stopView();
  stopView = () => {};
  clear(main);
  if (!getKey()) {
    stopView = renderSignIn();
    return;
  }
  setSignedIn(true);
  const { path, params } = parseRoute();
  markNav(path);
  const job = path.match(/^\/jobs\/([^/]+)$/);
  if (job) stopView = renderJob(main, decodeURIComponent(job[1]));
  else if (path === "/submit") stopView = renderSubmit(main);
  else if (path === "/queue") stopView = renderQueue(main);
  else if (path === "/compare") stopView = renderCompare(main, (params.get("ids") || "").split(",").filter(Boolean));
  else stopView = renderJobs(main, params);
}

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
});
route();
