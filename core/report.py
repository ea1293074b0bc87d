"""render_report(result) -> a self-contained HTML page: a summary (per variable its verdict
and best handle in words), coupling heatmaps, handles, controls, coupling diagnostics with a
glossary, timings.

Heatmaps are inline SVG (no scripts, no external assets), one per level, variables × sites,
on one colour scale per level with its legend; sites labelled with their tokens where the
level has them, handle sites outlined; wide levels scroll inside the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from itertools import pairwise

from core.calibrate import IIA
from core.finding import Finding, findings
from core.result import ControlsResult, DasResult, JobResult, LevelResult

CELL = 18  # px per heatmap cell
SITE_FONT = 10  # px of a site label
NAME_FONT = 12  # px of a variable name
CHAR_W = 0.62  # a character's width per px of font size (system-ui, roughly)
# sequential scale, light → dark: (share of the level's largest weight, colour)
SCALE = ((0.0, (247, 251, 255)), (0.25, (198, 219, 239)), (0.5, (107, 174, 214)),
         (0.75, (33, 113, 181)), (1.0, (8, 48, 107)))
HANDLE_STROKE = "#c2410c"
# a table's frame: it scrolls sideways when the window is narrow, so keyboards can reach it
WRAP = ('<div class="wrap" tabindex="0" role="region" '
        'aria-label="table (scrolls sideways when narrow)">')

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1400px;color:#1b1f24;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f6f8fa;padding:0 .2rem;white-space:nowrap}
.wrap{overflow-x:auto;max-width:100%}
.scroll{overflow:auto;max-height:80vh;border:1px solid #d0d7de;padding:.5rem}
.warn{color:#8a5a00}
.summary{border:1px solid #d0d7de;border-radius:6px;padding:.5rem 1rem;background:#fbfcfd}
.summary li{margin:.35rem 0}
.verdict{display:inline-block;border-radius:1em;padding:0 .6em;font-weight:600;
border:1px solid currentColor}
.verdict.localized{color:#116329}.verdict.other{color:#8a5a00}.verdict.none{color:#57606a}
.candidate{color:#57606a}
.diag{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.diag>.wrap{flex:2 1 520px}.glossary{flex:1 1 260px;font-size:13px;
border-left:3px solid #d0d7de;padding-left:.75rem}
.glossary dt{font-weight:600}.glossary dd{margin:0 0 .4rem}
@media (max-width:900px){body{padding:0 .5rem;margin:1rem auto}th,td{padding:.2rem .3rem}
code{padding:0}}
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _iia(iia: IIA) -> str:
    return (f"{_fmt(iia.overall)} (sens&nbsp;{_fmt(iia.sensitivity)}, "
            f"inv&nbsp;{_fmt(iia.invariance)})")


def scale_rgb(share: float) -> tuple[int, int, int]:
    """The colour of a weight at ``share`` (0–1) of the level's largest weight."""
    share = max(0.0, min(1.0, share)) if share == share else 0.0
    for (lo, lo_rgb), (hi, hi_rgb) in pairwise(SCALE):
        if share <= hi:
            t = (share - lo) / (hi - lo)
            r, g, b = (round(a + (c - a) * t) for a, c in zip(lo_rgb, hi_rgb, strict=True))
            return r, g, b
    return SCALE[-1][1]


def _color(share: float) -> str:
    r, g, b = scale_rgb(share)
    return f"rgb({r},{g},{b})"


def _text_w(text: str, font: int) -> float:
    return len(text) * font * CHAR_W


def _legend(peak: float, x: int, y: int) -> str:
    """A colour bar from 0 to ``peak`` with three ticks, the handle and kept marks."""
    bar_w = 160
    stops = "".join(f'<stop offset="{at}" stop-color="{_color(at)}"/>' for at, _ in SCALE)
    ticks = "".join(
        f'<text x="{x + bar_w * f}" y="{y + 26}" font-size="10" text-anchor="middle">'
        f"{peak * f:.3g}</text>" for f in (0.0, 0.5, 1.0))
    return (f'<defs><linearGradient id="scale-{x}-{y}">{stops}</linearGradient></defs>'
            f'<text x="{x}" y="{y - 4}" font-size="11">coupling weight (share of the '
            "variable's mass)</text>"
            f'<rect x="{x}" y="{y}" width="{bar_w}" height="12" fill="url(#scale-{x}-{y})" '
            f'stroke="#8c959f"/>{ticks}'
            f'<rect x="{x + bar_w + 24}" y="{y}" width="12" height="12" fill="none" '
            f'stroke="{HANDLE_STROKE}" stroke-width="2"/>'
            f'<text x="{x + bar_w + 40}" y="{y + 10}" font-size="11">the variable\'s handle '
            "site</text>"
            f'<rect x="{x + bar_w + 210}" y="{y + 9}" width="12" height="3" fill="#1b1f24"/>'
            f'<text x="{x + bar_w + 226}" y="{y + 10}" font-size="11">kept for the next '
            "level (bold)</text>")


def heatmap_svg(variables: Sequence[str], sites: Sequence[str],
                rows: Sequence[Sequence[float]], kept: Sequence[str] = (),
                labels: Mapping[str, str] | None = None,
                handles: Mapping[str, Sequence[str]] | None = None) -> str:
    """An SVG heatmap of (V, S) weights on one colour scale for the level (0 to its largest
    weight) with its legend; sites labelled by ``labels`` (their tokens) where given, the
    handle sites of each variable (``handles``) outlined, kept sites bold and underlined."""
    labels, handles = labels or {}, handles or {}
    names = [labels.get(site, site) for site in sites]
    longest = max((_text_w(name, SITE_FONT) for name in names), default=10.0)
    name_w = int(max((_text_w(v, NAME_FONT) for v in variables), default=40.0)) + 14
    label_h = int(longest * 0.87) + 16  # labels turn by 60°: up 0.87 of their length
    legend_h = 44
    top = legend_h + label_h
    width = int(max(name_w + CELL * len(sites) + longest * 0.5 + 12, name_w + 560))
    height = top + CELL * len(variables) + 6
    peak = max((max(row) for row in rows if len(row)), default=0.0)
    peak = peak if peak > 0 else 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="coupling heatmap, {len(variables)} variables by '
             f'{len(sites)} sites">', _legend(peak, name_w, 16)]
    kept_set = set(kept)
    for s, (site, name) in enumerate(zip(sites, names, strict=True)):
        x = name_w + s * CELL + CELL // 2 + 4
        bold = site in kept_set
        parts.append(f'<text x="{x}" y="{top - 6}" font-size="{SITE_FONT}" '
                     f'font-weight="{"bold" if bold else "normal"}" '
                     f'transform="rotate(-60 {x} {top - 6})">{html.escape(name)}</text>')
        if bold:
            parts.append(f'<rect x="{name_w + s * CELL}" y="{top - 3}" width="{CELL - 1}" '
                         'height="2" fill="#1b1f24"/>')
    for v, (variable, row) in enumerate(zip(variables, rows, strict=True)):
        y = top + v * CELL
        parts.append(f'<text x="{name_w - 6}" y="{y + CELL - 5}" font-size="{NAME_FONT}" '
                     f'text-anchor="end">{html.escape(variable)}</text>')
        own = set(handles.get(variable, ()))
        for s, value in enumerate(row):
            mark = (f' stroke="{HANDLE_STROKE}" stroke-width="2"' if sites[s] in own else "")
            parts.append(
                f'<rect x="{name_w + s * CELL}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" '
                f'fill="{_color(value / peak)}"{mark}><title>{html.escape(variable)} → '
                f'{html.escape(names[s])}: {value:.4f}'
                f'{" (handle site)" if sites[s] in own else ""}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _warnings(warnings: Sequence[str]) -> str:
    return "".join(f'<p class="warn">⚠ {html.escape(w)}</p>' for w in warnings)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; cells are HTML already (escape text before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"{WRAP}<table><tr>{head}</tr>{body}</table></div>"


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _sites(sites: Sequence[str]) -> str:
    """Site ids, each unbroken, the list free to wrap between them."""
    return ", ".join(_code(site) for site in sites)


def _controls_section(result: JobResult) -> str:
    controls: ControlsResult | None = result.controls
    if controls is None:
        return "<h2>Controls</h2><p>Turned off in the spec (<code>controls</code>).</p>"
    random_net = controls.random_net
    rows = []
    for variable, handle in result.handles.items():
        control = random_net.handles.get(variable) if random_net is not None else None
        mass = controls.label_permutation.get(variable)
        depth = controls.depth.get(variable, [])
        rows.append([
            html.escape(variable), _fmt(handle.iia_test.overall),
            (f"{_fmt(control.iia_test.overall)} {_sites(control.sites)}"
             if control is not None else "off"),
            (f"{_fmt(mass.real_mass)} / {_fmt(mass.control_mass)} / {_fmt(mass.uniform_mass)}"
             f" / {_fmt(mass.max_mass)}" if mass is not None else "off"),
            ", ".join(f"{_code(p.location)}{'*' if p.in_handle else ''} {_fmt(p.iia_test)}"
                      for p in depth) or "off",
        ])
    accuracy = f"real net {_fmt(controls.base_accuracy)}"
    if random_net is not None:
        accuracy += (f", random net ({html.escape(random_net.weights)} weights, seed "
                     f"{random_net.seed}) {_fmt(random_net.base_accuracy)}")
    timing = ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.3f} s"
                       for k, v in controls.timing.items())
    return (
        "<h2>Controls</h2>"
        f"<p>Share of test base inputs the net gets right: {accuracy}. Time: {timing}.</p>"
        + _warnings(controls.warnings)
        + _table(["variable", "IIA test (handle)", "random-net IIA test (its handle)",
                  "kept-site mass: real / permuted labels / uniform / max",
                  "full-vector interchange IIA test (* handle location)"], rows))


def _diagnostics_section(level: LevelResult) -> str:
    diagnostics = level.diagnostics
    if diagnostics is None:
        return ""
    permutation = level.label_permutation or {}
    rows = []
    for variable, d in diagnostics.variables.items():
        mass = permutation.get(variable)
        rows.append([
            html.escape(variable), _fmt(d.entropy), _code(d.best_site),
            _code(d.second_site) if d.second_site is not None else "–", _fmt(d.margin, 4),
            _fmt(d.cost_margin, 4), _fmt(d.null_share_kept),
            (f"{_fmt(mass.real_mass)} / {_fmt(mass.control_mass)} / {_fmt(mass.uniform_mass)}"
             if mass is not None else "–")])
    pairs = [[html.escape(p.first), html.escape(p.second), _fmt(p.signature_cosine),
              _fmt(p.label_agreement), _fmt(p.row_overlap)] for p in diagnostics.pairs]
    return (
        f'<div class="diag">{WRAP}'
        + _table(["variable", "row entropy (1 = uniform)", "best site", "second site",
                "mass margin", "cost margin", "null share of kept mass",
                "kept mass: real / permuted / uniform"], rows)
        + (_table(["variable", "variable", "signature cosine",
                   "same label (pairs either changes)", "row overlap"], pairs)
           if pairs else "") + "</div>" + glossary_html() + "</div>")


def _level_section(level: LevelResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td>{_sites(h.sites)}</td>"
        f'<td class="num">{h.k}</td><td class="num">{h.strength:g}</td>'
        f'<td class="num">{_fmt(h.epsilon, 4)}</td><td class="num">{_fmt(h.iia_calibration)}</td>'
        f"<td>{_iia(h.iia_test)}</td><td>{_iia(h.hard_iia_test)}</td></tr>"
        for v, h in level.handles.items())
    warnings = _warnings(level.warnings)
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.3f} s" for k, v in level.timing.items())
    heatmap = heatmap_svg(level.variables, level.sites, level.coupling, level.kept,
                          level.site_labels,
                          {v: h.sites for v, h in level.handles.items()})
    return (
        f"<h2>Level {level.index}: {html.escape(level.granularity)} "
        f"({len(level.sites)} sites)</h2>"
        f"<p>{level.runtime_s:.3f} s ({timing}); {level.forward_passes:,} forward passes; "
        f"kept: <code>{html.escape(', '.join(level.kept))}</code></p>{warnings}"
        f'<div class="scroll" tabindex="0" role="region" aria-label="level {level.index} '
        f'heatmap (scrolls)">{heatmap}</div>'
        f"{WRAP}<table><tr><th>variable</th><th>handle sites</th><th>k</th>"
        "<th>λ</th><th>ε</th><th>IIA calibration</th><th>IIA test (soft)</th>"
        f"<th>IIA test (hard)</th></tr>{rows}</table></div>" + _diagnostics_section(level))


def _das_section(das: DasResult | None) -> str:
    if das is None:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td><code>{html.escape(r.site)}</code></td>"
        f'<td class="num">{_fmt(r.iia_calibration)}</td><td>{_iia(r.iia_test)}</td>'
        f'<td class="num">{r.epochs}</td><td class="num">{r.runtime_s:.3f}</td></tr>'
        for v, r in das.best.items())
    return (
        f"<h2>DAS ({html.escape(das.mode)})</h2><p>{das.trainings} trainings, "
        f"{das.forward_passes:,} forward passes in {das.runtime_s:.2f} s</p>"
        f"{WRAP}<table><tr><th>variable</th><th>best site</th>"
        "<th>IIA calibration</th><th>IIA test</th><th>epochs</th><th>s</th></tr>"
        f"{rows}</table></div>")


GLOSSARY = (
    ("IIA", "interchange intervention accuracy: the share of test pairs on which patching "
     "the handle from the source input makes the net give the causal model's "
     "counterfactual answer."),
    ("sensitivity / invariance", "IIA on the pairs where the variable's value changes "
     "(the answer must move) / where it does not (the answer must stay)."),
    ("soft handle λ", "the handle patches each site in proportion to its coupling weight, "
     "scaled by λ; the hard IIA patches the same sites fully."),
    ("row entropy", "how spread a variable's coupling is over the level's sites: 1 is "
     "uniform (the coupling says nothing), 0 is one site."),
    ("mass margin", "the best site's weight minus the second best's: near 0, the coupling "
     "cannot tell those two sites apart."),
    ("cost margin", "the second site's transport cost minus the best's (costs are 0–1)."),
    ("null share of kept mass", "how much of the mass on the kept sites the null row (no "
     "variable) takes: near 1, the kept sites are not this variable's."),
    ("kept mass: real / permuted / uniform / max", "the coupling's mass on the kept sites "
     "with the real labels, with the labels shuffled across pairs (a control: real should "
     "be far above it), what a uniform row would put there, and the most it can put."),
    ("signature cosine / row overlap", "how alike two variables' signatures are, and how "
     "much their coupling rows share sites: near 1, transport cannot separate them."),
    ("random net", "the same job rerun on a net of the same shape with random weights: a "
     "handle should beat it by a wide margin."),
)


def glossary_html() -> str:
    items = "".join(f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>"
                    for term, text in GLOSSARY)
    return ('<aside class="glossary" aria-label="Glossary"><h3>In plain words</h3>'
            f"<dl>{items}</dl></aside>")


def summary_html(found: Sequence[Finding]) -> str:
    """The summary at the top: per variable its verdict, then the handle in words (the
    headline only when localized) and the method that found it."""
    items = []
    for finding in found:
        kind = ("localized" if finding.localized
                else "none" if finding.verdict is None else "other")
        badge = f'<span class="verdict {kind}">{html.escape(finding.label)}</span>'
        reason = (f" — {html.escape(finding.reason)}" if finding.reason else "")
        if finding.localized:
            body = (f"<strong>{html.escape(finding.handle)}</strong> "
                    f"(found by {html.escape(finding.method)}){reason}")
        else:
            body = (f"<strong>{html.escape(finding.variable)}</strong>{reason}. "
                    f'<span class="candidate">Best candidate, not a finding: '
                    f"{html.escape(finding.handle)} (found by "
                    f"{html.escape(finding.method)}).</span>")
        items.append(f"<li>{badge} {body}</li>")
    if not items:
        return ""
    return ('<section class="summary" aria-labelledby="summary"><h2 id="summary">Summary</h2>'
            f"<ul>{''.join(items)}</ul></section>")


def render_report(result: JobResult, title: str = "PLOT report") -> str:
    """The whole report as one HTML string (writing it is the caller's job)."""
    found = findings(result)
    methods = {f.variable: f.method for f in found}
    handles = "".join(
        f"<tr><td>{html.escape(v)}</td><td class=\"num\">{h.level}</td>"
        f"<td>{_sites(h.sites)}</td>"
        f'<td class="num">{_fmt(h.iia_calibration)}</td><td>{_iia(h.iia_test)}</td>'
        f"<td>{_iia(h.hard_iia_test)}</td><td>{html.escape(methods.get(v, 'transport'))}</td>"
        "</tr>"
        for v, h in result.handles.items())
    timing = "".join(f'<tr><td>{html.escape(k)}</td><td class="num">{v:.3f}</td></tr>'
                     for k, v in result.timing.items())
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>net <code>{html.escape(str(result.net.get('path')))}</code> on {result.device}; "
        f"{result.forward_passes:,} forward passes in {result.timing['total_s']:.2f} s</p>"
        + summary_html(found)
        + "<h2>Handles</h2><p>Transport's best handle per variable; the last column says "
        "which method's handle scored best on the calibration bank (DAS below).</p>"
        f"{WRAP}<table><tr><th>variable</th><th>level</th><th>sites</th>"
        "<th>IIA calibration</th><th>IIA test (soft)</th><th>IIA test (hard)</th>"
        f"<th>best method</th></tr>{handles}</table></div>" + _controls_section(result)
        + f"<h2>Timing (s)</h2>{WRAP}<table>{timing}</table></div>"
        + _das_section(result.das)
        + "".join(_level_section(level) for level in result.levels)
        + "</main></body></html>")
