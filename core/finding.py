"""A job's finding per variable, in words: its verdict, its best handle (transport or DAS,
by calibration IIA, the selection score), and that handle described ("WX lives in 6 neurons
of layer 0; soft handle λ = 4; test IIA 0.95, …; random net 0.49").

A handle whose verdict is not ``localized`` is never the headline: the verdict is, and the
handle is described as a candidate. Results written before verdicts carry none and say so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from core.result import DasRun, HandleResult, JobResult

VERDICT_LABELS = {
    "localized": "localized",
    "not_identifiable": "not identifiable",
    "no_better_than_control": "no better than control",
    "output_copy": "copies the output",
}
# site kinds (the last part of a site id) as counted nouns
UNIT_NOUNS = {"neuron": ("neuron", "neurons"), "block": ("block", "blocks"),
              "band": ("band", "bands"), "pca": ("PCA direction", "PCA directions"),
              "pos": ("position", "positions"), "head": ("head", "heads")}


@dataclass(frozen=True)
class Finding:
    """One variable's line of the summary.

    Attributes:
        verdict: the verdict key (None: the result predates verdicts); label: in words.
        localized: the verdict is ``localized`` (only then is the handle the headline).
        method: ``transport``, ``guided DAS`` or ``full DAS``: which found the best handle.
        handle: the best handle in words; reason: the verdict's reason, when given.
    """

    variable: str
    verdict: str | None
    label: str
    localized: bool
    method: str
    handle: str
    reason: str | None


def _fmt(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.2f}"


def _where(sites: list[str]) -> str:
    """``6 neurons of layer 0`` from site ids ``layer:0/neuron:3`` …"""
    locations: list[str] = []
    kinds: Counter[str] = Counter()
    for site in sites:
        parts = site.split("/")
        location = parts[0].replace(":", " ") if parts else site
        if location not in locations:
            locations.append(location)
        kinds[parts[-1].split(":")[0] if len(parts) > 1 else "location"] += 1
    if list(kinds) == ["location"]:
        return f"the whole of {', '.join(locations)}"
    units = ", ".join(
        f"{count} {UNIT_NOUNS.get(kind, (kind, kind + 's'))[count != 1]}"
        for kind, count in kinds.items())
    if len(locations) > 1:
        head = locations[0].split(" ")[0]
        same = all(loc.split(" ")[0] == head for loc in locations)
        place = (f"{head}s " + ", ".join(loc.split(" ", 1)[-1] for loc in locations)
                 if same else ", ".join(locations))
    else:
        place = locations[0]
    return f"{units} of {place}"


def _iia_words(iia_overall: float, sensitivity: float | None, invariance: float | None
               ) -> str:
    return (f"test IIA {_fmt(iia_overall)}, sensitivity {_fmt(sensitivity)}, "
            f"invariance {_fmt(invariance)}")


def handle_words(variable: str, handle: HandleResult, random_net: float | None) -> str:
    text = (f"{variable} lives in {_where(handle.sites)}; soft handle λ = {handle.strength:g}; "
            + _iia_words(handle.iia_test.overall, handle.iia_test.sensitivity,
                         handle.iia_test.invariance))
    return text + (f"; random net {_fmt(random_net)}" if random_net is not None else "")


def das_words(variable: str, run: DasRun) -> str:
    location = run.site.split("/")[0].replace(":", " ")
    return (f"{variable} lives in a {run.dim}-dimensional subspace of {location}; "
            + _iia_words(run.iia_test.overall, run.iia_test.sensitivity,
                         run.iia_test.invariance))


def findings(result: JobResult) -> list[Finding]:
    """One finding per variable with a handle, in the result's variable order."""
    random_net = (result.controls.random_net if result.controls is not None else None)
    out = []
    for variable in result.variables:
        handle = result.handles.get(variable)
        if handle is None:
            continue
        control = random_net.handles.get(variable) if random_net is not None else None
        words = handle_words(variable, handle,
                             control.iia_test.overall if control is not None else None)
        method = "transport"
        das = result.das.best.get(variable) if result.das is not None else None
        if das is not None and das.iia_calibration > handle.iia_calibration:
            method = f"{result.das.mode} DAS" if result.das is not None else "DAS"
            words = das_words(variable, das)
        verdict = handle.verdict
        label = (VERDICT_LABELS.get(verdict, verdict.replace("_", " ")) if verdict
                 else "no verdict")
        reason = handle.verdict_reason
        if verdict is None:
            reason = "this result was written before verdicts; judge it by its controls"
        out.append(Finding(variable, verdict, label, verdict == "localized", method, words,
                           reason))
    return out
