"""Controls: the random net (own weights, same schedule), the depth check, their warnings."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from core import controls
from core.backend import LocalBackend
from core.calibrate import IIA
from core.causal.bank import Banks, PairBank
from core.control import JobControl
from core.controls import (
    control_warnings,
    later_locations,
    random_net_inputs,
    randomized_net,
    run_depth_check,
    run_random_net_control,
    site_set_handle,
)
from core.engine import Interventions, trace_bank
from core.errors import JobCancelled
from core.events import EngineEvent
from core.label_permutation import PermutationControl
from core.level_inputs import LevelInputs
from core.level_sites import pca_frames
from core.nets.base import InterventableNet
from core.nets.mlp import MLP
from core.nets.registry import build_net
from core.progressive import best_handles, run_levels
from core.result import DepthPoint, HandleResult, LevelResult, RandomNetControl
from core.sites import parse_site
from core.spec import CalibrationSpec, CouplingSpec, LevelSpec
from tests.unit.core.nets.test_transformer import tiny, token_ids
from tests.unit.core.planted import planted_level_inputs, planted_mlp

GRU = {"arch": "gru", "input_size": 2, "hidden_size": 5, "num_steps": 4, "num_classes": 2}


def _storage(net: nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in net.parameters()}


@pytest.mark.parametrize("weights", ["reinit", "shuffle"])
def test_the_random_net_shares_no_weight_with_the_real_one(weights: Any) -> None:
    net = planted_mlp()
    before = {name: p.clone() for name, p in net.named_parameters()}
    random = randomized_net(net, weights, seed=0)
    assert type(random) is type(net) and random.widths == net.widths
    assert not _storage(net) & _storage(random)
    for name, param in random.named_parameters():
        original = dict(net.named_parameters())[name]
        if original.numel() > 1 and bool((original != original.flatten()[0]).any()):
            assert not torch.equal(param, original), name  # every non-constant tensor moved
        if weights == "shuffle":  # the same values, elsewhere
            torch.testing.assert_close(param.flatten().sort().values,
                                       original.flatten().sort().values)
    for name, param in net.named_parameters():  # the real net is untouched
        assert torch.equal(param, before[name]), name
    again = randomized_net(net, weights, seed=0)
    for a, b in zip(random.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)  # seeded
    assert not torch.equal(next(randomized_net(net, weights, seed=1).parameters()),
                           next(random.parameters()))


def test_reinit_leaves_the_global_rng_alone_and_redraws_bare_parameters() -> None:
    class Scaled(MLP):
        def __init__(self) -> None:
            super().__init__({"arch": "mlp", "input_dim": 2, "hidden_dims": [3],
                              "num_classes": 2})
            self.scale = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))  # no reset_parameters

    net = Scaled()
    state = torch.random.get_rng_state()
    random = randomized_net(net, "reinit", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not torch.equal(random.scale, net.scale)
    torch.manual_seed(0)
    gru = build_net(GRU)
    assert not _storage(gru) & _storage(randomized_net(gru, "reinit", 0))
    transformer = tiny()
    shuffled = randomized_net(transformer, "shuffle", 0)
    assert not _storage(transformer) & _storage(shuffled)


def test_later_locations_follow_the_forward_order() -> None:
    torch.manual_seed(0)
    gru = build_net(GRU)
    assert later_locations(gru.widths, ["step:2", "step:1"]) == ["step:1", "step:2", "step:3"]
    assert later_locations(planted_mlp().widths, ["layer:1"]) == ["layer:1"]
    widths = tiny().widths  # 3 blocks
    assert later_locations(widths, ["attn:1/pos:last"]) == [
        "attn:1/pos:last", "resid:1/pos:last", "resid:2/pos:last"]
    assert later_locations(widths, ["resid:2/pos:3", "head:0.1/pos:last"]) == [
        "head:0.1/pos:last", "resid:0/pos:last", "resid:1/pos:last", "resid:2/pos:3",
        "resid:2/pos:last"]


@pytest.fixture(scope="module")
def inputs() -> LevelInputs:
    return planted_level_inputs(300, top_k=[1, 2, 4], strengths=[1.0, 2.0, 4.0])


SCHEDULE = [LevelSpec(granularity="neuron")]


def test_the_random_net_runs_the_same_schedule_and_falls_far_short(
        inputs: LevelInputs) -> None:
    real = best_handles(run_levels(SCHEDULE, inputs))
    events: list[EngineEvent] = []
    control = run_random_net_control(SCHEDULE, inputs, "reinit", 0, JobControl(events.append),
                                     scope="schedule")
    assert control.handles.keys() == real.keys()
    for variable, handle in real.items():
        assert handle.iia_test.overall >= 0.99
        # four classes: a net that computes nothing stays far below the planted handle
        assert control.handles[variable].iia_test.overall < 0.6
        assert control.handles[variable].level == 0
    assert control.base_accuracy < 0.6
    assert control.forward_passes > 6 * 300 and control.runtime_s > 0
    assert events and all(e.kind == "control" and e.data["control"] == "random_net"
                          for e in events)
    assert {e.data["stage"] for e in events} == {"signatures", "calibration"}
    assert RandomNetControl.model_validate(control.to_json()) == control


def test_a_cancel_during_the_random_net_names_the_control(inputs: LevelInputs) -> None:
    polls: list[int] = []

    def cancel_on_second_poll() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(JobCancelled) as error:
        run_random_net_control(SCHEDULE, inputs, "reinit", 0,
                               JobControl(should_cancel=cancel_on_second_poll))
    assert error.value.where == "controls.random_net"
    assert "random-net control" in error.value.message


def test_the_depth_check_is_the_full_vector_interchange(inputs: LevelInputs) -> None:
    handles = best_handles(run_levels(SCHEDULE, inputs))
    depth, passes = run_depth_check(inputs, handles)
    test = inputs.banks.test
    # layer:1 is the planted net's last hidden layer: its whole vector from the source
    # gives the source's output, so the IIA is the share of pairs whose counterfactual
    # label is the source's own label (2 p_s + q_s)
    source_labels = (2 * test.source[:, 0] + test.source[:, 1]).long().unsqueeze(1)
    for variable in ("P", "Q"):
        copy = float((test.counterfactual_labels[variable] == source_labels).float().mean())
        [point] = depth[variable]
        assert (point.location, point.in_handle) == ("layer:1", True)
        torch.testing.assert_close(point.iia_test, copy)
        assert 0.3 < copy < 0.7  # far below the planted handle's 1.0
    assert passes == test.size  # both variables' one location, run once
    assert not control_warnings(handles, None, {}, depth)
    # a scoped test bank (the paper scheme's): each variable on its own pairs alone
    even = torch.arange(test.size) % 2 == 0
    scoped = dataclasses.replace(inputs, banks=dataclasses.replace(
        inputs.banks, test=dataclasses.replace(test, scope={"P": even, "Q": ~even})))
    depth, _ = run_depth_check(scoped, handles)
    for variable, mine in (("P", even), ("Q", ~even)):
        copy = (test.counterfactual_labels[variable] == source_labels)[mine]
        torch.testing.assert_close(depth[variable][0].iia_test, float(copy.float().mean()))


def _handle(variable: str, iia: float) -> HandleResult:
    score = IIA(iia, None, None, 100, 50)
    return HandleResult(variable=variable, level=0, sites=["layer:0"], weights=[1.0], k=1,
                        strength=1.0, epsilon=0.1, beta=None, iia_calibration=iia,
                        iia_test=score, hard_iia_calibration=iia, hard_iia_test=score)


def test_warnings_name_the_control_a_handle_does_not_beat() -> None:
    handles = {"A": _handle("A", 0.80), "B": _handle("B", 0.95)}
    random_net = RandomNetControl(
        weights="reinit", seed=0, handles={"A": _handle("A", 0.75), "B": _handle("B", 0.30)},
        base_accuracy=0.5, runtime_s=1.0, forward_passes=10)
    permutation = {"A": PermutationControl(["s"], 0.30, 0.10, 0.10, 0.30, 8),
                   "B": PermutationControl(["s"], 0.12, 0.10, 0.10, 0.30, 8)}
    depth = {"A": [DepthPoint("layer:0", 0.5, True), DepthPoint("layer:1", 0.4, False)],
             "B": [DepthPoint("layer:0", 0.5, True), DepthPoint("layer:1", 0.94, False)]}
    warnings = control_warnings(handles, random_net, permutation, depth)
    assert len(warnings) == 3
    assert warnings[0].startswith("A: the random-net control reaches 0.750 test IIA")
    assert "0.800" in warnings[0]
    assert warnings[1].startswith("B: the coupling puts 0.120 of its row on its kept sites")
    assert warnings[2].startswith("B: the plain full-vector interchange at layer:1")
    assert "0.940" in warnings[2] and "0.950" in warnings[2]


TWO_LEVELS = [LevelSpec(granularity="block", block_size=3, keep=1),
              LevelSpec(granularity="neuron")]


@pytest.fixture(scope="module")
def real(inputs: LevelInputs) -> list[LevelResult]:
    """The planted net's levels: a block level, then a neuron level."""
    return run_levels(TWO_LEVELS, inputs)


@pytest.mark.parametrize("scope", ["handles", "first_level"])
def test_the_cheaper_random_net_control_still_catches_the_planted_net(
        inputs: LevelInputs, real: list[LevelResult], scope: Any) -> None:
    chosen = best_handles(real)
    assert {h.level for h in chosen.values()} == {1}  # the planted neurons, at the finer level
    cheap = run_random_net_control(TWO_LEVELS, inputs, "reinit", 0, real=real, scope=scope)
    whole = run_random_net_control(TWO_LEVELS, inputs, "reinit", 0, scope="schedule")
    assert cheap.forward_passes < whole.forward_passes
    for variable, handle in chosen.items():
        mine = cheap.handles[variable]
        # a site set the real job chose at some level, recalibrated (or the first level's)
        sets = [level.handles[variable].sites for level in real]
        assert mine.sites in sets or (scope == "first_level" and mine.level == 0)
        assert handle.iia_test.overall >= 0.99 and mine.iia_test.overall < 0.6
    # the real handles beat it by far more than the margin: no random-net warning
    assert not [w for w in control_warnings(chosen, cheap, {}, {}) if "random-net" in w]


def test_a_real_handles_site_set_is_recalibrated_on_the_random_net(
        inputs: LevelInputs, real: list[LevelResult]) -> None:
    planted = best_handles(real)["P"]
    random, _ = random_net_inputs(inputs, "reinit", 0, JobControl())
    handle, passes = site_set_handle(random, planted, lambda done, total: None)
    assert (handle.sites, handle.weights, handle.level) == (planted.sites, planted.weights, 1)
    assert handle.strength in {*inputs.calibration.strengths, planted.strength}
    assert passes >= inputs.banks.calibration.size
    assert handle.iia_test.overall < 0.6
    # on the real net the same site set is the planted neuron again
    again, _ = site_set_handle(inputs, planted, lambda done, total: None)
    assert again.iia_test.overall >= 0.99


# ---------------------------------------------------------------- depth check on a token net


def _old_depth_check(inputs: LevelInputs, handles: dict[str, HandleResult]
                     ) -> dict[str, list[DepthPoint]]:
    """The per-variable computation the depth check replaced: every (variable, later
    location) interchange run on its own, on traces of every location."""
    widths = inputs.net.widths
    out = {}
    for variable, handle in handles.items():
        own = list(dict.fromkeys(parse_site(s, widths).location for s in handle.sites))
        points = []
        for location in later_locations(widths, own):
            whole = Interventions({location: torch.ones(1, widths[location])}, {})
            hits = inputs.backend.matches("test", whole,
                                          inputs.banks.test.counterfactual_labels[variable])
            points.append(DepthPoint(location, float(hits.float().mean()), location in own))
        out[variable] = points
    return out


def _token_bank(seed: int, size: int = 40) -> PairBank:
    generator = torch.Generator().manual_seed(seed)
    base, source = token_ids(size, seed), token_ids(size, seed + 100)
    labels = torch.randint(0, 3, (size, 1), generator=generator)
    # A and B share their locations; C acts later at another position
    return PairBank(base, source, labels,
                    {v: torch.randint(0, 3, (size, 1), generator=generator)
                     for v in ("A", "B", "C")})


def _token_inputs(net: InterventableNet, banks: Banks, scoped: bool) -> LevelInputs:
    """Inputs over ``banks``: every location traced (``scoped=False``), or the logits only
    with a backend that traces what it is asked for (as a job's)."""
    first: tuple[str, ...] | None = () if scoped else None
    traces = {split: trace_bank(net, getattr(banks, split), 64, first)
              for split in ("fit", "calibration", "test")}
    backend = LocalBackend(net, traces, 64, banks if scoped else None)
    return LevelInputs(net, banks, traces, CouplingSpec(), CalibrationSpec(), 64, backend)


TOKEN_HANDLES = {"A": ["resid:0/pos:last/dims:0-4", "attn:1/pos:last"],
                 "B": ["resid:0/pos:last/dims:4-8"], "C": ["resid:1/pos:3"]}


def _token_handles() -> dict[str, HandleResult]:
    return {v: _handle(v, 0.9).model_copy(update={"sites": sites, "weights": [1.0] * len(sites)})
            for v, sites in TOKEN_HANDLES.items()}


def test_the_depth_check_runs_each_location_once_and_matches_the_per_variable_one() -> None:
    net = tiny()
    banks = Banks(_token_bank(0), _token_bank(1), _token_bank(2))
    handles = _token_handles()
    want = _old_depth_check(_token_inputs(net, banks, scoped=False), handles)
    inputs = _token_inputs(net, banks, scoped=True)
    backend = inputs.backend
    assert isinstance(backend, LocalBackend)
    depth, passes = run_depth_check(inputs, handles)
    assert depth == want  # the same profiles, point for point
    assert [p.location for p in depth["A"]] == [
        "resid:0/pos:last", "attn:1/pos:last", "resid:1/pos:last", "resid:2/pos:last"]
    assert [p.in_handle for p in depth["B"]] == [True, False, False]
    # A and B share resid:{0,1,2}/pos:last: 6 distinct locations, not 4 + 3 + 2
    assert passes == 6 * banks.test.size
    # only the test bank was traced, for the depth check's locations
    assert backend.held == sorted({p.location for points in depth.values() for p in points})
    assert [t.activation_device() is not None for t in inputs.traces.values()] == [
        False, False, True]


def test_the_depth_check_reuses_traces_that_hold_its_locations() -> None:
    net = tiny()
    banks = Banks(_token_bank(0), _token_bank(1), _token_bank(2))
    inputs = _token_inputs(net, banks, scoped=True)
    backend = inputs.backend
    assert isinstance(backend, LocalBackend)
    backend.scope(None)  # every location held (as for DAS)
    held = {split: traces for split, traces in inputs.traces.items()}
    depth, _ = run_depth_check(inputs, _token_handles())
    assert depth == _old_depth_check(_token_inputs(net, banks, scoped=False), _token_handles())
    assert all(inputs.traces[split] is held[split] for split in held)  # not re-traced


# ---------------------------------------------------------------- random net: only the handles'


PCA_HANDLES = {"A": ["resid:0/pos:last/pca:2", "resid:1/pos:3/dims:0-4"],
               "B": ["resid:0/pos:last/pca:2-4"], "C": ["attn:1/pos:3/dims:4-8"]}


def _pca_level() -> LevelResult:
    handles = {v: _handle(v, 0.9).model_copy(update={
        "sites": sites, "weights": [1.0] * len(sites), "k": len(sites)})
        for v, sites in PCA_HANDLES.items()}
    return LevelResult(index=0, granularity="pca", variables=list(handles), sites=[],
                       cost=[], coupling=[], kept=[], kept_by_variable={}, handles=handles,
                       plans=[], runtime_s=0.0, forward_passes=0, timing={})


def test_the_random_net_traces_only_the_handles_locations_and_frames_each_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    net = tiny()
    banks = Banks(_token_bank(0), _token_bank(1), _token_bank(2))
    inputs = _token_inputs(net, banks, scoped=True)
    level = _pca_level()
    # the old way: the random net traced at every location, each handle's frames its own
    everything, _ = random_net_inputs(inputs, "reinit", 0, JobControl(), None)
    want = {v: site_set_handle(everything, h, lambda done, total: None)[0]
            for v, h in level.handles.items()}
    traced: list[Any] = []
    framed: list[list[str]] = []
    real_trace, real_frames = trace_bank, pca_frames

    def tracing(*args: Any) -> Any:  # the real tracing, its locations recorded
        traced.append(args[3])
        return real_trace(*args)

    def framing(inputs: LevelInputs, locations: list[str]) -> Any:
        framed.append(list(locations))
        return real_frames(inputs, locations)

    monkeypatch.setattr(controls, "trace_bank", tracing)
    monkeypatch.setattr(controls, "pca_frames", framing)
    for budget in (None, 1):  # unbounded; 1 byte: one bank at a time
        traced.clear()
        framed.clear()
        control = run_random_net_control([], inputs, "reinit", 0, real=[level],
                                         scope="handles", budget=budget)
        assert control.handles == want  # the same result
        handles_at = sorted(["resid:0/pos:last", "attn:1/pos:3", "resid:1/pos:3"])
        # every bank traced once, for the handles' locations (beyond the budget: the
        # logits first, then the banks one at a time by the backend)
        assert traced == ([handles_at] * 3 if budget is None else [[]] * 3)
        assert framed == [["resid:0/pos:last"]]  # A's and B's PCA location, once


def test_the_random_net_inputs_hold_only_what_they_are_asked_for(inputs: LevelInputs
                                                                  ) -> None:
    # a net whose trace keeps every location is traced once, whole, whatever is asked
    whole, passes = random_net_inputs(inputs, "reinit", 0, JobControl(), ["layer:1"])
    assert passes == 2 * 3 * inputs.banks.fit.size
    assert whole.traces["fit"].source.activations["layer:0"].shape[0] == inputs.banks.fit.size
    net = tiny()
    banks = Banks(_token_bank(0), _token_bank(1), _token_bank(2))
    inputs = _token_inputs(net, banks, scoped=True)
    locations = ["resid:1/pos:3", "resid:0/pos:last"]
    random, passes = random_net_inputs(inputs, "reinit", 0, JobControl(), locations)
    everything, _ = random_net_inputs(inputs, "reinit", 0, JobControl(), None)
    backend = random.backend
    assert isinstance(backend, LocalBackend)
    assert backend.held == sorted(locations) and backend.mode == "device"
    assert passes == 2 * 3 * banks.fit.size
    for split in ("fit", "calibration", "test"):
        assert 0 < random.traces[split].activation_bytes < \
            everything.traces[split].activation_bytes
        for location in locations:
            torch.testing.assert_close(random.traces[split].source.activations[location],
                                       everything.traces[split].source.activations[location])
