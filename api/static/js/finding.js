// A job's finding per variable in words (the same as core/finding.py): the verdict, the
// best handle (transport or DAS, by calibration IIA) and that handle described. A handle
// whose verdict is not "localized" is never the headline: the verdict is.

import { h, fmt } from "./dom.js";

const VERDICTS = {
  localized: "localized",
  not_identifiable: "not identifiable",
  no_better_than_control: "no better than control",
  output_copy: "copies the output",
};
const UNITS = { neuron: ["neuron", "neurons"], block: ["block", "blocks"], band: ["band", "bands"],
  pca: ["PCA direction", "PCA directions"], pos: ["position", "positions"], head: ["head", "heads"] };

const two = (value) => fmt(value, 2);

function where(sites) {
  const locations = [];
  const kinds = new Map();
  for (const site of sites) {
    const parts = site.split("/");
    const location = parts[0].replace(":", " ");
    if (!locations.includes(location)) locations.push(location);
    const kind = parts.length > 1 ? parts[parts.length - 1].split(":")[0] : "location";
    kinds.set(kind, (kinds.get(kind) || 0) + 1);
  }
  if (kinds.size === 1 && kinds.has("location")) return `the whole of ${locations.join(", ")}`;
  const units = [...kinds].map(([kind, n]) => `${n} ${(UNITS[kind] || [kind, `${kind}s`])[n === 1 ? 0 : 1]}`).join(", ");
  let place = locations[0];
  if (locations.length > 1) {
    const head = locations[0].split(" ")[0];
    place = locations.every((loc) => loc.split(" ")[0] === head)
      ? `${head}s ${locations.map((loc) => loc.split(" ").slice(1).join(" ")).join(", ")}`
      : locations.join(", ");
  }
  return `${units} of ${place}`;
}

function iiaWords(iia) {
  return `test IIA ${two(iia.overall)}, sensitivity ${two(iia.sensitivity)}, invariance ${two(iia.invariance)}`;
}

export function findings(result) {
  const randomNet = result.controls?.random_net;
  const out = [];
  for (const variable of result.variables || Object.keys(result.handles || {})) {
    const handle = result.handles?.[variable];
    if (!handle) continue;
    const control = randomNet?.handles?.[variable];
    let words = `${variable} lives in ${where(handle.sites)}; soft handle λ = ${handle.strength}; ${iiaWords(handle.iia_test)}`
      + (control ? `; random net ${two(control.iia_test.overall)}` : "");
    let method = "transport";
    const das = result.das?.best?.[variable];
    if (das && das.iia_calibration > handle.iia_calibration) {
      method = `${result.das.mode} DAS`;
      words = `${variable} lives in a ${das.dim}-dimensional subspace of ${das.site.split("/")[0].replace(":", " ")}; ${iiaWords(das.iia_test)}`;
    }
    const verdict = handle.verdict ?? null;
    out.push({
      variable, verdict, method, words, localized: verdict === "localized",
      label: verdict ? (VERDICTS[verdict] || verdict.replaceAll("_", " ")) : "no verdict",
      reason: verdict ? handle.verdict_reason : "this result was written before verdicts; judge it by its controls",
    });
  }
  return out;
}

export function summarySection(result) {
  const items = findings(result).map((f) => {
    const kind = f.localized ? "localized" : f.verdict ? "other" : "none";
    const badge = h("span", { class: `verdict ${kind}` }, f.label);
    const reason = f.reason ? ` — ${f.reason}` : "";
    return h("li", { dataset: { variable: f.variable, verdict: f.verdict || "" } }, badge, " ",
      f.localized
        ? [h("strong", {}, f.words), ` (found by ${f.method})${reason}`]
        : [h("strong", {}, f.variable), `${reason}. `,
          h("span", { class: "candidate" }, `Best candidate, not a finding: ${f.words} (found by ${f.method}).`)]);
  });
  if (!items.length) return null;
  return h("section", { class: "summary card", "aria-labelledby": "summary-title" },
    h("h2", { id: "summary-title" }, "Summary"), h("ul", {}, items));
}

export const GLOSSARY = [
  ["IIA", "interchange intervention accuracy: the share of test pairs on which patching the handle from the source input makes the net give the causal model's counterfactual answer."],
  ["sensitivity / invariance", "IIA on the pairs where the variable's value changes (the answer must move) / where it does not (the answer must stay)."],
  ["soft handle λ", "the handle patches each site in proportion to its coupling weight, scaled by λ; the hard IIA patches the same sites fully."],
  ["row entropy", "how spread a variable's coupling is over the level's sites: 1 is uniform (the coupling says nothing), 0 is one site."],
  ["mass margin", "the best site's weight minus the second best's: near 0, the coupling cannot tell those two sites apart."],
  ["cost margin", "the second site's transport cost minus the best's (costs are 0–1)."],
  ["null share of kept", "how much of the mass on the kept sites the null row (no variable) takes: near 1, the kept sites are not this variable's."],
  ["kept mass: real / permuted / uniform", "the coupling's mass on the kept sites with the real labels, with the labels shuffled across pairs (a control: real should be far above it), and what a uniform row would put there."],
  ["random net", "the same job rerun on a net of the same shape with random weights: a handle should beat it by a wide margin."],
];

export function glossary() {
  return h("aside", { class: "glossary", "aria-label": "Glossary" },
    h("h4", {}, "In plain words"),
    h("dl", {}, GLOSSARY.map(([term, text]) => [h("dt", {}, term), h("dd", {}, text)])));
}
