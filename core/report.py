"""render_report(result) -> a self-contained HTML page: coupling heatmaps, handles, controls,
coupling diagnostics, timings.

Heatmaps are inline SVG (no scripts, no external assets), one per level, variables × sites,
with every site id readable; wide levels scroll horizontally.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from core.calibrate import IIA
from core.result import ControlsResult, DasResult, JobResult, LevelResult

CELL = 18  # px per heatmap cell
LABEL_W = 90  # px for the variable names column

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1b1f24;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;border:1px solid #d0d7de;padding:.5rem}
.warn{color:#9a6700}code{background:#f6f8fa;padding:0 .2rem}
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _iia(iia: IIA) -> str:
    return (f"{_fmt(iia.overall)} (sens {_fmt(iia.sensitivity)}, "
            f"inv {_fmt(iia.invariance)})")


def _color(weight: float) -> str:
    """White → deep blue, on the cell's share of the row's largest weight."""
    shade = int(255 - 200 * max(0.0, min(1.0, weight)))
    return f"rgb({shade},{shade + (255 - shade) // 3},255)"


def heatmap_svg(variables: Sequence[str], sites: Sequence[str],
                rows: Sequence[Sequence[float]], kept: Sequence[str] = ()) -> str:
    """An SVG heatmap of (V, S) weights; each row scaled to its own maximum."""
    label_h = 8 + 6 * max((len(s) for s in sites), default=1)
    width = LABEL_W + CELL * len(sites) + 10
    height = label_h + CELL * len(variables) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="coupling heatmap, {len(variables)} variables by '
             f'{len(sites)} sites">']
    for s, site in enumerate(sites):
        x = LABEL_W + s * CELL + CELL // 2 + 4
        weight = "bold" if site in kept else "normal"
        parts.append(f'<text x="{x}" y="{label_h - 4}" font-size="10" font-weight="{weight}" '
                     f'transform="rotate(-60 {x} {label_h - 4})">{html.escape(site)}</text>')
    for v, (variable, row) in enumerate(zip(variables, rows, strict=True)):
        y = label_h + v * CELL
        parts.append(f'<text x="0" y="{y + CELL - 5}" font-size="12">{html.escape(variable)}'
                     "</text>")
        peak = max(row) if row and max(row) > 0 else 1.0
        for s, value in enumerate(row):
            parts.append(
                f'<rect x="{LABEL_W + s * CELL}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" '
                f'fill="{_color(value / peak)}"><title>{html.escape(variable)} → '
                f'{html.escape(sites[s])}: {value:.4f}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _warnings(warnings: Sequence[str]) -> str:
    return "".join(f'<p class="warn">⚠ {html.escape(w)}</p>' for w in warnings)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; cells are HTML already (escape text before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


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
            (f"{_fmt(control.iia_test.overall)} {_code(', '.join(control.sites))}"
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
        _table(["variable", "row entropy (1 = uniform)", "best site", "second site",
                "mass margin", "cost margin", "null share of kept mass",
                "kept mass: real / permuted / uniform"], rows)
        + (_table(["variable", "variable", "signature cosine",
                   "same label (pairs either changes)", "row overlap"], pairs)
           if pairs else ""))


def _level_section(level: LevelResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td><code>{html.escape(', '.join(h.sites))}</code></td>"
        f'<td class="num">{h.k}</td><td class="num">{h.strength:g}</td>'
        f'<td class="num">{_fmt(h.epsilon, 4)}</td><td class="num">{_fmt(h.iia_calibration)}</td>'
        f"<td>{_iia(h.iia_test)}</td><td>{_iia(h.hard_iia_test)}</td></tr>"
        for v, h in level.handles.items())
    warnings = _warnings(level.warnings)
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.3f} s" for k, v in level.timing.items())
    heatmap = heatmap_svg(level.variables, level.sites, level.coupling, level.kept)
    return (
        f"<h2>Level {level.index}: {html.escape(level.granularity)} "
        f"({len(level.sites)} sites)</h2>"
        f"<p>{level.runtime_s:.3f} s ({timing}); {level.forward_passes:,} forward passes; "
        f"kept: <code>{html.escape(', '.join(level.kept))}</code></p>{warnings}"
        f'<div class="scroll">{heatmap}</div>'
        "<table><tr><th>variable</th><th>handle sites</th><th>k</th><th>λ</th><th>ε</th>"
        "<th>IIA calibration</th><th>IIA test (soft)</th><th>IIA test (hard)</th></tr>"
        f"{rows}</table>" + _diagnostics_section(level))


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
        "<table><tr><th>variable</th><th>best site</th><th>IIA calibration</th>"
        f"<th>IIA test</th><th>epochs</th><th>s</th></tr>{rows}</table>")


def render_report(result: JobResult, title: str = "PLOT report") -> str:
    """The whole report as one HTML string (writing it is the caller's job)."""
    handles = "".join(
        f"<tr><td>{html.escape(v)}</td><td class=\"num\">{h.level}</td>"
        f"<td><code>{html.escape(', '.join(h.sites))}</code></td>"
        f'<td class="num">{_fmt(h.iia_calibration)}</td><td>{_iia(h.iia_test)}</td>'
        f"<td>{_iia(h.hard_iia_test)}</td></tr>"
        for v, h in result.handles.items())
    timing = "".join(f'<tr><td>{html.escape(k)}</td><td class="num">{v:.3f}</td></tr>'
                     for k, v in result.timing.items())
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>net <code>{html.escape(str(result.net.get('path')))}</code> on {result.device}; "
        f"{result.forward_passes:,} forward passes in {result.timing['total_s']:.2f} s</p>"
        "<h2>Handles</h2><table><tr><th>variable</th><th>level</th><th>sites</th>"
        "<th>IIA calibration</th><th>IIA test (soft)</th><th>IIA test (hard)</th></tr>"
        f"{handles}</table>" + _controls_section(result)
        + f"<h2>Timing (s)</h2><table>{timing}</table>"
        + _das_section(result.das)
        + "".join(_level_section(level) for level in result.levels)
        + "</body></html>")
