"""Full and PLOT-guided DAS on the planted rotated-subspace net; the DAS spec and result."""

from __future__ import annotations

import pytest
import torch

from core.calibrate import IIA
from core.causal.bank import Banks
from core.das_search import (
    bracket_dims,
    guided_targets,
    handle_frames,
    mass_support,
    run_das,
    widen_locations,
    widen_reason,
)
from core.engine import trace_bank
from core.errors import SpecError
from core.level_inputs import LevelInputs
from core.result import HandleResult, JobResult, LevelResult
from core.sites import parse_site
from core.spec import CalibrationSpec, CouplingSpec, DasSpec, parse_job_spec
from tests.unit.core.planted_rotated import planted_rotated_bank, planted_rotated_mlp

SPEC = DasSpec(mode="full", dims=[1, 2, 4], lr=0.05, batch_size=64)


@pytest.fixture(scope="module")
def inputs(device: torch.device) -> LevelInputs:
    net = planted_rotated_mlp().to(device)
    banks = Banks(*(planted_rotated_bank(256, seed).to(device) for seed in range(3)))
    traces = {s: trace_bank(net, getattr(banks, s)) for s in ("fit", "calibration", "test")}
    return LevelInputs.local(net, banks, traces, CouplingSpec(), CalibrationSpec(), 50_000)


def _handle(variable: str, sites: list[str]) -> HandleResult:
    iia = IIA(1.0, 1.0, 1.0, 10, 5)
    return HandleResult(variable=variable, level=1, sites=sites,
                        weights=[1.0 / len(sites)] * len(sites), k=len(sites), strength=1.0,
                        epsilon=0.1, beta=None, iia_calibration=1.0, iia_test=iia,
                        hard_iia_calibration=1.0, hard_iia_test=iia)


def pca_level() -> LevelResult:
    """A finer PCA level (keep 2) that kept layer:1 bands first, and for P a layer:0 band."""
    sites = ["layer:0/pca:2", "layer:1/pca:2", "layer:1/pca:2-2", "layer:1/pca:3-7"]
    return LevelResult(
        index=1, granularity="pca", variables=["P", "Q"], sites=sites,
        cost=[[0.5, 0.1, 0.9, 0.9], [0.9, 0.9, 0.1, 0.9]],
        coupling=[[0.3, 0.6, 0.05, 0.05], [0.05, 0.05, 0.6, 0.3]],
        kept=["layer:1/pca:2", "layer:0/pca:2", "layer:1/pca:2-2", "layer:1/pca:3-7"],
        kept_by_variable={"P": ["layer:1/pca:2", "layer:0/pca:2"],
                          "Q": ["layer:1/pca:2-2", "layer:1/pca:3-7"]},
        handles={"P": _handle("P", ["layer:1/pca:2"]), "Q": _handle("Q", ["layer:1/pca:2-2"])},
        plans=[], runtime_s=0.0, forward_passes=0, timing={})


def test_full_das_picks_the_planted_site_and_rank_on_calibration(inputs: LevelInputs) -> None:
    seen: list[tuple[int, int]] = []
    result = run_das(SPEC, inputs, [], progress=lambda d, t: seen.append((d, t)))
    assert result.trainings == 2 * 3 * 2 == len(result.runs)  # locations × ks × variables
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)
    assert result.best["P"].site == "layer:1/das:2"
    assert result.best["Q"].site == "layer:1/das:1"
    for run in result.best.values():
        assert run.iia_calibration >= 0.99 and run.iia_test.overall >= 0.99
    wrong = [r for r in result.runs if r.variable == "P" and r.site.startswith("layer:0")]
    assert max(r.iia_test.overall for r in wrong) < 0.9


def test_guided_targets_bracket_k_by_the_handle_support(inputs: LevelInputs) -> None:
    targets = guided_targets(pca_level(), inputs.net, [1, 2, 4])
    plan = [(t.variable, t.location, t.dims) for t in targets]
    # P: handle pca:2 (2 directions) at layer:1; its second site is the layer:0 band.
    # Q: handle pca:2-2 (1 direction); its second site pca:3-7 is at layer:1 too.
    # k at the ends of [S, 2S] below the width: S = 2 gives k 2 and 4 at layer:1 (width 8)
    # but only 2 at layer:0 (width 4: k = 4 is the whole vector); S = 1 gives k 1 and 2
    assert plan == [("P", "layer:1", (2, 4)), ("P", "layer:0", (2,)),
                    ("Q", "layer:1", (1, 2))]
    coarse = guided_targets(pca_level(), inputs.net, [4, 16])
    # both ends round up to 4 at layer:1; at layer:0 no rank fits below 4, so 3
    assert [t.dims for t in coarse] == [(4,), (3,), (4,)]


@pytest.mark.parametrize(("dims", "support", "width", "expected"), [
    (range(1, 17), 6, 16, (6, 12)),
    (range(1, 17), 9, 16, (9, 15)),  # 2S capped below the width
    (range(1, 17), 16, 16, (15,)),  # never the whole vector
    ([1, 2, 4, 8, 16], 3, 16, (4, 8)),
    ([1, 2, 4, 8, 16], 6, 10, (8,)),  # 12 > every rank that fits: the largest, 8
    ([8, 16], 1, 4, (3,)),  # no rank fits: the largest below the width
    ([1, 2], 1, 1, (1,)),  # a width-1 location has only k = 1
])
def test_bracket_dims_rounds_both_ends_up_to_the_grid(
        dims: list[int], support: int, width: int, expected: tuple[int, ...]) -> None:
    assert bracket_dims(dims, support, width) == expected


def neuron_level() -> LevelResult:
    """A neuron level whose P handle is coordinates 3 then 1 of layer:1."""
    sites = ["layer:1/dims:1", "layer:1/dims:3", "layer:0/dims:0"]
    return LevelResult(
        index=0, granularity="neuron", variables=["P"], sites=sites,
        cost=[[0.2, 0.1, 0.9]], coupling=[[0.3, 0.6, 0.1]],
        kept=["layer:1/dims:3", "layer:1/dims:1"],
        kept_by_variable={"P": ["layer:1/dims:3", "layer:1/dims:1"]},
        handles={"P": _handle("P", ["layer:1/dims:3", "layer:1/dims:1"])},
        plans=[], runtime_s=0.0, forward_passes=0, timing={})


def test_guided_runs_at_a_neuron_level_start_from_the_handle_axes(inputs: LevelInputs) -> None:
    spec = SPEC.model_copy(update={"mode": "guided"})
    frames = handle_frames(spec, inputs, neuron_level())
    assert frames is not None and set(frames) == {"layer:1"}
    (target,) = guided_targets(neuron_level(), inputs.net, [1, 2, 4], frames)
    assert target.dims == (2, 4) and target.init is not None
    width = inputs.net.widths["layer:1"]
    axes = torch.eye(width)[:, [3, 1] + [c for c in range(width) if c not in (1, 3)]]
    torch.testing.assert_close(target.init.cpu(), axes)
    assert handle_frames(spec.model_copy(update={"init": "pca"}), inputs, neuron_level()) is None
    assert handle_frames(spec.model_copy(update={"init": "random"}), inputs, pca_level()) is None


def test_guided_das_trains_only_at_the_kept_locations(inputs: LevelInputs) -> None:
    spec = SPEC.model_copy(update={"mode": "guided", "restart_best": False})
    result = run_das(spec, inputs, [pca_level()])
    # P at layer:1 with k 2 and 4 (its handle); at layer:0, a kept site its handle does not
    # use, k from the spread of its coupling there (one 2-direction site: [2, 4], capped
    # under its width 4), from a random start; Q at layer:1 with k 1 and 2
    assert inputs.net.widths["layer:0"] == 4
    assert result.trainings == 5
    assert {r.site for r in result.runs} == {"layer:1/das:1", "layer:1/das:2", "layer:1/das:4",
                                             "layer:0/das:2"}
    assert {(r.site.split("/")[0], r.init) for r in result.runs} == {
        ("layer:1", "handle"), ("layer:0", "random")}
    assert result.best["P"].site.startswith("layer:1/")
    assert result.best["P"].iia_test.overall >= 0.99
    assert result.best["Q"].iia_test.overall >= 0.99


def test_guided_das_restarts_each_best_run_from_a_random_start(inputs: LevelInputs) -> None:
    """The best run of each variable started from the handle's axes; it is trained once
    more from a random start at the same (location, k), and the better on calibration kept."""
    spec = SPEC.model_copy(update={"mode": "guided"})
    without = run_das(spec.model_copy(update={"restart_best": False}), inputs, [pca_level()])
    result = run_das(spec, inputs, [pca_level()])
    assert result.trainings == without.trainings + 2 == len(result.runs)
    again = result.runs[without.trainings:]
    assert {(r.variable, r.site, r.init) for r in again} == {
        (v, run.site, "random") for v, run in without.best.items()}
    for v, run in result.best.items():
        mine = [r for r in result.runs if r.variable == v and r.site == without.best[v].site]
        assert run.iia_calibration == max(r.iia_calibration for r in mine)


def test_restarts_multiply_the_trainings(inputs: LevelInputs) -> None:
    spec = SPEC.model_copy(update={"mode": "guided", "restarts": 2, "max_epochs": 2,
                                   "init": "random"})
    result = run_das(spec, inputs, [pca_level()])
    assert result.trainings == 10 and len(result.runs) == 5
    assert all(r.init == "random" for r in result.runs)


def test_guided_das_without_levels_names_the_mode(inputs: LevelInputs) -> None:
    with pytest.raises(SpecError) as error:
        run_das(SPEC.model_copy(update={"mode": "guided"}), inputs, [])
    assert error.value.where == "das.mode"


def test_das_result_round_trips_through_job_json(inputs: LevelInputs) -> None:
    spec = SPEC.model_copy(update={"mode": "guided", "max_epochs": 1, "min_epochs": 1})
    das = run_das(spec, inputs, [pca_level()])
    job = JobResult(variables=["P", "Q"], levels=[], handles={}, timing={"das_s": 1.0},
                    forward_passes=1, net={}, banks={}, spec={}, device="cpu", max_rows=1,
                    das=das)
    assert JobResult.model_validate(job.to_json()) == job
    without = {k: v for k, v in job.to_json().items() if k != "das"}
    assert JobResult.model_validate(without).das is None  # results written before DAS still load


@pytest.mark.parametrize(("das", "field"), [
    ({"dims": []}, "das.dims"), ({"dims": [2, 0]}, "das.dims.1"), ({"mode": "both"}, "das.mode"),
    ({"lr": 0}, "das.lr"), ({"restarts": 0}, "das.restarts"), ({"init": "svd"}, "das.init"),
    ({"min_epochs": 9, "max_epochs": 3}, "das"),
])
def test_das_spec_errors_name_the_field(das: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_job_spec({"task": {"builtin": "hierarchical_equality"}, "das": das})
    assert f"{field}:" in error.value.message


def test_das_is_off_by_default() -> None:
    spec = parse_job_spec({"task": {"builtin": "hierarchical_equality"}})
    assert spec.das.mode == "off" and spec.das.dims == [1, 2, 4, 8, 16]


@pytest.mark.parametrize(("widen", "q_handle_calibration"), [
    ({"widen_below": 0.9, "widen_margin": None, "widen_weak_handle": None}, 1.0),
    ({}, 1.0),
    ({"widen_margin": None}, 0.8),
], ids=["below", "default margin", "weak handle alone"])
def test_guided_das_widens_where_its_calibration_iia_is_low(
        inputs: LevelInputs, widen: dict[str, object], q_handle_calibration: float) -> None:
    """Q kept only layer:0, where it does not live: its guided runs score low on
    calibration (under 0.9, and far under its handle's 1.0; or its handle is a weak guide
    at 0.8), so they are repeated at layer:1 with the same ranks and the next one, which
    finds it."""
    q_handle = _handle("Q", ["layer:0/pca:1"]).model_copy(
        update={"iia_calibration": q_handle_calibration})
    level = pca_level()
    level = level.model_copy(update={
        "kept_by_variable": {"P": ["layer:1/pca:2"], "Q": ["layer:0/pca:1"]},
        "handles": {"P": _handle("P", ["layer:1/pca:2"]), "Q": q_handle}})
    spec = SPEC.model_copy(update={"mode": "guided", **widen})
    seen: list[tuple[int, int]] = []
    wide = run_das(spec, inputs, [level], progress=lambda d, t: seen.append((d, t)))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes back
    assert seen[-1] == (wide.trainings, wide.trainings)
    guided_q = [r for r in wide.runs if r.variable == "Q" and r.site.startswith("layer:0/")]
    assert guided_q and max(r.iia_calibration for r in guided_q) < 0.9
    widened = [r for r in wide.runs if r.variable == "Q" and r.site.startswith("layer:1/")]
    ranks = {r.dim for r in guided_q}
    assert ranks == {1, 2}  # the bracket [1, 2] of a one-direction handle
    assert {r.dim for r in widened} == ranks | {4}  # and the next rank of dims
    assert {r.site.split("/")[0] for r in wide.runs if r.variable == "P"} == {"layer:1"}
    assert wide.trainings == len(wide.runs)
    assert list(wide.widened) == ["Q"] and "calibration IIA" in wide.widened["Q"]
    assert wide.best["Q"].site.startswith("layer:1/")
    assert wide.best["Q"].iia_test.overall >= 0.99


def test_guided_das_does_not_widen_when_off_or_close_to_the_handle(inputs: LevelInputs
                                                                   ) -> None:
    level = pca_level().model_copy(update={
        "kept_by_variable": {"P": ["layer:1/pca:2"], "Q": ["layer:0/pca:1"]},
        "handles": {"P": _handle("P", ["layer:1/pca:2"]), "Q": _handle("Q", ["layer:0/pca:1"])}})
    spec = SPEC.model_copy(update={"mode": "guided", "widen_margin": None,
                                   "widen_weak_handle": None})
    narrow = run_das(spec, inputs, [level])
    assert {r.site.split("/")[0] for r in narrow.runs} == {"layer:0", "layer:1"}
    assert not any(r.variable == "Q" and r.site.startswith("layer:1/") for r in narrow.runs)
    assert narrow.widened == {}


def test_mass_support_is_the_perplexity_of_the_row_at_the_location() -> None:
    sites = [parse_site(s) for s in ["layer:0/dims:0", "layer:0/dims:1", "layer:0/dims:2",
                                     "layer:1/pca:3-4", "layer:1/pca:5-6"]]
    row = [0.2, 0.2, 0.0, 0.3, 0.3]
    assert mass_support(row, sites, "layer:0", 8) == 2  # two equal neurons, one empty
    assert mass_support(row, sites, "layer:1", 8) == 4  # two equal 2-direction bands
    assert mass_support(row, sites, "layer:1", 3) == 3  # capped at the width
    assert mass_support([0.0] * 5, sites, "layer:0", 8) == 1


def test_widen_reason_compares_with_the_threshold_and_the_handle() -> None:
    spec = DasSpec(mode="guided")  # widen_margin 0.02, widen_weak_handle 0.9, widen_below off
    assert widen_reason(0.97, 0.995, spec) is not None  # trails the handle by 0.025
    assert widen_reason(0.98, 0.995, spec) is None
    assert widen_reason(0.95, 0.95, spec) is None  # as good as a good handle
    assert widen_reason(0.99, 0.85, spec) is not None  # the handle is a weak guide
    assert widen_reason(0.99, 0.85, spec.model_copy(update={"widen_weak_handle": None})) is None
    assert widen_reason(0.99, 0.85, spec, whole=True) is None  # a whole-location swap
    below = DasSpec(mode="guided", widen_below=0.9, widen_margin=None, widen_weak_handle=None)
    assert widen_reason(0.6, 0.6, below) is not None and widen_reason(0.95, 1.0, below) is None


def test_a_token_net_widens_to_every_block_at_the_kept_positions() -> None:
    from core.nets.transformer import TransformerNet

    net = TransformerNet({"vocab_size": 12, "d_model": 8, "n_layers": 3, "n_heads": 2,
                          "d_mlp": 16, "max_len": 5, "label_token_ids": [1, 2],
                          "pad_token_id": None})
    locations = widen_locations(net, ["resid:1/pos:2/pca:1", "resid:0/pos:last"])
    assert set(locations) == {f"resid:{b}/pos:{p}" for b in range(3) for p in ("2", "last")}
    assert set(locations.values()) == {8}
