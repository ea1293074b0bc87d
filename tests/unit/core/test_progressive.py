"""The level loop's named steps (sites → signatures → cost → plans → handles) on the planted
net, and ``run_levels`` resuming after a checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.control import JobControl
from core.cost import cost_matrix
from core.errors import JobCancelled
from core.events import EngineEvent
from core.level_inputs import LevelInputs
from core.level_sites import CouplingGroup, LevelSites, coupling_groups, enumerate_level_sites
from core.level_steps import (
    LevelSignatures,
    calibrate_handles,
    compute_cost,
    compute_signatures,
    group_cost,
    solve_plans,
)
from core.progressive import run_level, run_levels
from core.result import LevelResult
from core.sites import Site, parse_site
from core.spec import CouplingSpec, LevelSpec
from tests.unit.core.planted import P_NEURON, Q_NEURON, planted_level_inputs

NEURONS = LevelSpec(granularity="neuron", keep=2)
PAIRS = 120


@pytest.fixture(scope="module")
def inputs() -> LevelInputs:
    return planted_level_inputs(PAIRS, top_k=[1, 2], strengths=[1.0, 2.0])


# per variable, two kept blocks of a coarser level (P's and Q's share one)
KEPT_BLOCKS = {"P": ["layer:1/dims:0-2", "layer:0/dims:0-1"],
               "Q": ["layer:1/dims:3-5", "layer:0/dims:0-1"]}


def parsed(inputs: LevelInputs, kept: dict[str, list[str]]) -> dict[str, list[Site]]:
    return {v: [parse_site(s, inputs.net.widths) for s in ids] for v, ids in kept.items()}


def no_progress(done: int, total: int) -> None:
    pass


# ---------------------------------------------------------------- step 1: sites


def test_the_first_level_couples_every_variable_with_every_location() -> None:
    assert coupling_groups(NEURONS, ["P", "Q"], None) == [CouplingGroup(("P", "Q"), None)]


def test_shared_and_per_variable_groups_refine_the_kept_sites(inputs: LevelInputs) -> None:
    kept = parsed(inputs, KEPT_BLOCKS)
    [shared] = coupling_groups(NEURONS, ["P", "Q"], kept)
    assert shared.variables == ("P", "Q")
    assert [s.id for s in shared.parents or ()] == [
        "layer:1/dims:0-2", "layer:0/dims:0-1", "layer:1/dims:3-5"]  # union, first seen
    per_variable = coupling_groups(NEURONS.model_copy(update={"scope": "per_variable"}),
                                   ["P", "Q"], kept)
    assert [g.variables for g in per_variable] == [("P",), ("Q",)]
    assert [[s.id for s in g.parents or ()] for g in per_variable] == [KEPT_BLOCKS["P"],
                                                                       KEPT_BLOCKS["Q"]]


def test_sites_are_in_net_order_and_each_group_indexes_its_own(inputs: LevelInputs) -> None:
    first = enumerate_level_sites(NEURONS, inputs, None)
    assert [s.id for s in first.sites] == ([f"layer:0/dims:{i}" for i in range(4)]
                                           + [f"layer:1/dims:{i}" for i in range(6)])
    assert first.columns == (tuple(range(10)),) and first.frames == {}
    assert first.directions == {"layer:0": 4, "layer:1": 6}

    level = NEURONS.model_copy(update={"scope": "per_variable"})
    found = enumerate_level_sites(level, inputs, parsed(inputs, KEPT_BLOCKS))
    assert [s.id for s in found.sites] == ["layer:0/dims:0", "layer:0/dims:1"] + [
        f"layer:1/dims:{i}" for i in range(6)]
    assert [[s.id for s in found.group_sites(g)] for g in range(2)] == [
        ["layer:0/dims:0", "layer:0/dims:1", "layer:1/dims:0", "layer:1/dims:1",
         "layer:1/dims:2"],
        ["layer:0/dims:0", "layer:0/dims:1", "layer:1/dims:3", "layer:1/dims:4",
         "layer:1/dims:5"]]


def test_a_pca_level_reads_its_sites_in_the_kept_locations_frames(inputs: LevelInputs) -> None:
    level = LevelSpec(granularity="pca", band_size=2)
    found = enumerate_level_sites(level, inputs, {"P": [parse_site("layer:1", inputs.net.widths)],
                                                  "Q": [parse_site("layer:1", inputs.net.widths)]})
    assert set(found.frames) == {"layer:1"}
    assert found.frames["layer:1"].shape[0] == 6
    assert found.directions["layer:1"] == found.frames["layer:1"].shape[1]
    assert all(s.kind == "pca" and s.location == "layer:1" for s in found.sites)


# ---------------------------------------------------------------- steps 2–3: signatures, cost


@pytest.fixture(scope="module")
def first(inputs: LevelInputs) -> tuple[LevelSites, LevelSignatures]:
    found = enumerate_level_sites(NEURONS, inputs, None)
    return found, compute_signatures(found, inputs, no_progress)


def test_signatures_have_one_row_per_variable_and_site(
        inputs: LevelInputs, first: tuple[LevelSites, LevelSignatures]) -> None:
    found, signatures = first
    assert signatures.variables.shape == (2, PAIRS, 4)
    assert signatures.sites.shape == (len(found.sites), PAIRS, 4)
    assert signatures.base_probs.shape == (PAIRS, 4)
    torch.testing.assert_close(signatures.base_probs.sum(-1), torch.ones(PAIRS))
    # the planted P neuron moves the output as P does; a copy the output never reads does not
    p_site = [s.id for s in found.sites].index(P_NEURON)
    assert bool(signatures.sites[p_site].any())
    assert not bool(signatures.sites[[s.id for s in found.sites].index("layer:1/dims:0")].any())


def test_one_cost_matrix_serves_the_level_and_its_shared_group(
        inputs: LevelInputs, first: tuple[LevelSites, LevelSignatures]) -> None:
    _, signatures = first
    null = torch.zeros_like(signatures.variables[:1])
    for kind in ("mse", "cosine", "agreement"):
        kinded = dataclasses.replace(inputs, coupling=CouplingSpec(cost=kind))
        cost = compute_cost(signatures, kinded)
        want = cost_matrix(kind, torch.cat([signatures.variables, null]), signatures.sites,
                           signatures.base_probs, 4)
        assert cost.matrix.shape == (3, 10)  # P, Q, then the null row
        torch.testing.assert_close(cost.matrix, want, rtol=0, atol=0)
        torch.testing.assert_close(cost.of_variables(), cost_matrix(
            kind, signatures.variables, signatures.sites, signatures.base_probs, 4))
        # the shared group is solved on the level matrix itself, not on a second one
        assert group_cost(cost, signatures, (0, 1), tuple(range(10)), kinded) is cost.matrix
        # a per-variable group: its variable and the null row at its own sites
        block = group_cost(cost, signatures, (1,), (2, 5, 9), kinded)
        torch.testing.assert_close(block, cost_matrix(
            kind, torch.cat([signatures.variables[[1]], null]), signatures.sites[[2, 5, 9]],
            signatures.base_probs, 4), rtol=0, atol=0)
    no_null = dataclasses.replace(inputs, coupling=CouplingSpec(null_row=False))
    assert compute_cost(signatures, no_null).matrix.shape == (2, 10)


# ---------------------------------------------------------------- steps 4–5: plans, handles


def test_plans_solve_each_group_over_the_knob_grid(
        inputs: LevelInputs, first: tuple[LevelSites, LevelSignatures]) -> None:
    found, signatures = first
    plans = solve_plans(found, signatures, compute_cost(signatures, inputs), inputs)
    [group] = plans.groups
    assert group.rows == (0, 1) and group.columns == tuple(range(10))
    [kind] = group.kinds  # planted_level_inputs' coupling has one cost kind
    assert kind.cost.shape == (3, 10)
    assert [p.epsilon for p in kind.plans] == [0.01, 0.1]  # planted_level_inputs' grid
    for plan in kind.plans:
        assert plan.plan.shape == (3, 10)
        torch.testing.assert_close(plan.plan.sum(1).float(), torch.full((3,), 1 / 3))
    # each plan proposes (k, λ) candidates per variable: 2 ks × 2 strengths
    assert [len(outcome.candidates[0]) for outcome in kind.solved] == [4, 4]


def test_handles_land_on_the_planted_neurons_and_are_reported(
        inputs: LevelInputs, first: tuple[LevelSites, LevelSignatures]) -> None:
    found, signatures = first
    plans = solve_plans(found, signatures, compute_cost(signatures, inputs), inputs)
    events: list[EngineEvent] = []
    handles = calibrate_handles(3, NEURONS, found, plans, inputs, JobControl(events.append))
    chosen = handles.by_variable
    for variable, planted in (("P", P_NEURON), ("Q", Q_NEURON)):
        outcome = chosen[variable]
        assert outcome.handle.sites[0] == planted and outcome.handle.level == 3
        assert found.sites[outcome.kept[0]].id == planted and len(outcome.kept) == NEURONS.keep
        assert float(outcome.row.sum()) == pytest.approx(1.0)
        assert outcome.diagnostics.best_site == planted
    rows = handles.rows(len(found.sites))
    assert int(rows["Q"].argmax()) == [s.id for s in found.sites].index(Q_NEURON)
    assert handles.kept(found)["P"][0] == P_NEURON
    assert [e.data["variable"] for e in events if e.kind == "calibration"] == ["P", "Q"]
    assert all(e.data["stage"] == "calibration" for e in events if e.kind == "progress")
    assert handles.passes > 0


def test_a_level_result_is_its_steps_written_down(inputs: LevelInputs) -> None:
    events: list[EngineEvent] = []
    level = run_level(0, NEURONS, inputs, None, JobControl(events.append))
    assert level.sites[4:] == [f"layer:1/dims:{i}" for i in range(6)]
    assert level.handles["P"].sites[0] == P_NEURON
    assert len(level.cost) == 2 and len(level.cost[0]) == 10  # no null row in the result
    assert level.kept_by_variable["P"][0] == P_NEURON
    assert level.kept == list(dict.fromkeys(level.kept_by_variable["P"]
                                            + level.kept_by_variable["Q"]))
    assert set(level.timing) == {"trace_s", "signatures_s", "coupling_s", "calibration_s",
                                 "label_permutation_s"}
    assert level.label_permutation is not None and set(level.label_permutation) == {"P", "Q"}
    assert events[0] == EngineEvent("level_started", {"level": 0, "granularity": "neuron",
                                                      "sites": 10})


# ---------------------------------------------------------------- run_levels


SCHEDULE = [LevelSpec(granularity="block", block_size=3, keep=1),
            LevelSpec(granularity="neuron", scope="per_variable")]


def test_run_levels_resumes_after_a_stored_checkpoint(inputs: LevelInputs) -> None:
    full = run_levels(SCHEDULE, inputs)
    stored = LevelResult.model_validate(full[0].to_json())  # what a restarted job reads back
    events: list[EngineEvent] = []
    seen: list[int] = []
    resumed = run_levels(SCHEDULE, inputs, JobControl(events.append), completed=[stored],
                         on_level=lambda level: seen.append(level.index))
    assert seen == [1] and resumed[0] is stored
    assert [e.data["level"] for e in events if e.kind == "level_started"] == [1]
    assert resumed[1].sites == full[1].sites and resumed[1].kept == full[1].kept
    assert resumed[1].handles == full[1].handles
    torch.testing.assert_close(torch.tensor(resumed[1].coupling), torch.tensor(full[1].coupling))
    # per-variable scope: each variable's row lives on the neurons of its own kept block
    for variable, block in (("P", P_NEURON), ("Q", Q_NEURON)):
        assert resumed[1].handles[variable].sites[0] == block


def test_a_cancel_between_levels_names_the_next_level(inputs: LevelInputs) -> None:
    finished: list[EngineEvent] = []
    control = JobControl(finished.append,
                         lambda: any(e.kind == "level_finished" for e in finished))
    with pytest.raises(JobCancelled) as error:
        run_levels(SCHEDULE, inputs, control)
    assert error.value.where == "levels.1"
    assert [e.kind for e in finished].count("level_finished") == 1


def test_a_cancel_during_calibration_stops_it_at_the_next_micro_batch() -> None:
    """With 8-row micro-batches, calibration reports (and polls) many times a variable; a
    cancel raised at its first report lets no further calibration batch report."""
    full = planted_level_inputs(PAIRS, top_k=[1, 2], strengths=[1.0, 2.0])
    small = LevelInputs.local(full.net, full.banks, full.traces, full.coupling,
                              full.calibration, 8)
    events: list[EngineEvent] = []

    def in_calibration() -> bool:
        return any(e.data.get("stage") == "calibration" for e in events)

    with pytest.raises(JobCancelled) as error:
        run_levels(SCHEDULE, small, JobControl(events.append, in_calibration))
    assert error.value.where == "levels.0"
    assert [e.data.get("stage") for e in events].count("calibration") == 1
    assert not [e for e in events if e.kind == "calibration"]  # no variable finished


def test_a_block_level_offers_every_group_size_and_a_pca_level_its_prefixes(
        inputs: LevelInputs) -> None:
    multi = LevelSpec(granularity="block", block_sizes=[2, 6])
    ids = [s.id for s in enumerate_level_sites(multi, inputs, None).sites]
    # layer 0 (width 4): pairs and one group of all 4; layer 1 (width 6): pairs and all 6
    assert ids == ["layer:0/dims:0-1", "layer:0/dims:0-3", "layer:0/dims:2-3",
                   "layer:1/dims:0-1", "layer:1/dims:0-5", "layer:1/dims:2-3",
                   "layer:1/dims:4-5"]
    pca = enumerate_level_sites(LevelSpec(granularity="pca", band_size=2), inputs, None)
    layer1 = [s.id for s in pca.sites if s.location == "layer:1"]
    k = int(pca.frames["layer:1"].shape[1])
    prefixes = [f"layer:1/pca:{n}" for n in (1, 2, 4) if n < k] + [f"layer:1/pca:{k}"]
    bands = [Site("layer:1", "pca", a, min(a + 2, k)).id for a in range(2, k, 2)]
    assert set(layer1) == set(prefixes) | set(bands)
    plain = enumerate_level_sites(LevelSpec(granularity="pca", band_size=2, prefixes=False),
                                  inputs, None)
    assert {s.id for s in plain.sites if s.location == "layer:1"} == {"layer:1/pca:2",
                                                                       *bands}
