"""The report's summary and heatmap: verdicts lead, a handle that is not localized is never
the headline, the best method is named, tokens label the sites, handle sites are marked."""

from __future__ import annotations

import re

from core.finding import findings
from core.report import heatmap_svg, render_report, scale_rgb
from core.result import JobResult
from tests.e2e.synthetic import make_das, make_result


def result_with_verdicts() -> JobResult:
    document = make_result(3, 40, das=make_das("guided", 30.0, 0.97))
    handles = document["levels"][0]["handles"]
    handles["var_00"] |= {"verdict": "localized", "verdict_reason": "beats every control"}
    handles["var_01"] |= {"verdict": "not_identifiable", "verdict_reason": "a flat row"}
    document["handles"] = handles
    document["levels"][0]["site_labels"] = {"layer:0/neuron:7": 'layer:0/neuron:7 "Paris"'}
    return JobResult.model_validate(document)


def test_the_summary_leads_with_verdicts_and_names_the_best_method() -> None:
    result = result_with_verdicts()
    by_variable = {f.variable: f for f in findings(result)}
    # DAS's calibration IIA 0.97 beats transport's 0.90 for var_00 only
    assert by_variable["var_00"].method == "guided DAS"
    assert by_variable["var_00"].handle.startswith("var_00 lives in a 4-dimensional subspace "
                                                   "of layer 0; test IIA 0.97")
    assert by_variable["var_01"].method == "transport"
    assert by_variable["var_01"].handle.startswith("var_01 lives in 2 neurons of layer 0; "
                                                   "soft handle λ = 1; test IIA 0.90")
    assert by_variable["var_02"].label == "no verdict"
    page = render_report(result)
    summary = page[page.index('id="summary"'):page.index("<h2>Handles")]
    assert "<strong>var_00 lives in" in summary  # localized: the handle is the headline
    assert "<strong>var_01</strong> — a flat row. " in summary  # not localized: the verdict is
    assert "Best candidate, not a finding: var_01 lives in" in summary
    assert summary.index("not identifiable") < summary.index("var_01 lives in")


def test_the_heatmap_has_a_legend_token_labels_and_marked_handle_sites() -> None:
    result = result_with_verdicts()
    page = render_report(result)
    assert "coupling weight (share of the variable's mass)" in page
    assert "layer:0/neuron:7 &quot;Paris&quot;" in page  # the token, not only the index
    assert "<dt>mass margin</dt>" in page and "<dt>kept mass: real / permuted" in page
    svg = heatmap_svg(["a", "b"], ["s0", "s1", "s2"], [[0.1, 0.5, 0.4], [0.0, 0.2, 0.8]],
                      kept=["s1"], handles={"a": ["s1"]})
    marked = re.findall(r'<rect [^>]*stroke="#c2410c" stroke-width="2"><title>([^<]*)', svg)
    assert marked == ["a → s1: 0.5000 (handle site)"]
    # one scale for the level: b's 0.8 is the darkest cell, a's 0.5 lighter
    assert f"rgb{scale_rgb(1.0)}".replace(" ", "") in svg.replace(" ", "")
    assert scale_rgb(0.5 / 0.8) != scale_rgb(1.0)
