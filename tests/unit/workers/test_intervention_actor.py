"""InterventionActor as a plain class (no Ray): same numbers as the in-process backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from core.backend import LocalBackend
from core.causal.bank import Banks, PairBank
from core.das_training import DasTarget, DasTraining, train_target
from core.engine import BankTraces, Interventions, trace_bank
from core.errors import JobCancelled, PlotError
from core.level_inputs import LevelInputs
from core.nets.io import load_net, save_net
from core.nets.mlp import MLP
from core.nets.outline import NetOutline
from core.sites import location_sites, neuron_sites
from core.spec import CalibrationSpec, CouplingSpec, DasSpec
from tests.unit.core.nets.test_transformer import CONFIG as TOKEN_CONFIG
from tests.unit.core.nets.test_transformer import tiny, token_ids
from workers.cluster import slots_for
from workers.intervention_actor import InterventionActor, NetCache, net_bytes
from workers.pool import chunk_bounds

CONFIG = {"arch": "mlp", "input_dim": 6, "hidden_dims": [8, 8], "num_classes": 3,
          "activation": "relu"}


def _net_dir(tmp_path: Path, seed: int = 0, width: int = 8) -> Path:
    torch.manual_seed(seed)
    net = MLP({**CONFIG, "hidden_dims": [width, width]})
    return save_net(net, tmp_path / f"net-{seed}-{width}")


def _traces(net_dir: Path) -> dict[str, BankTraces]:
    net = load_net(net_dir)
    torch.manual_seed(3)
    return {split: BankTraces(net.trace(torch.randn(12, 6)), net.trace(torch.randn(12, 6)))
            for split in ("fit", "calibration", "test")}


def test_actor_signatures_and_matches_equal_the_local_backend(tmp_path: Path) -> None:
    net_dir = _net_dir(tmp_path)
    traces = _traces(net_dir)
    local = LocalBackend(load_net(net_dir), traces, max_rows=64)
    actor = InterventionActor(device="cpu")
    actor.load_job("job", str(net_dir), traces, 64)
    sites = neuron_sites(location_sites(local.net.widths))
    assert_close(actor.signatures("job", sites[3:9], {}), local.signatures(sites, {})[3:9])

    coefficients = torch.rand(5, 8)
    plan = Interventions({"layer:1": coefficients}, {})
    targets = torch.randint(0, 3, (12, 1))
    expected = local.matches("test", plan, targets)
    assert torch.equal(actor.matches("job", "test", plan.slice(1, 4), targets), expected[1:4])
    # a variable's own pairs (a scoped bank): the named pairs alone, in the index's order
    own = torch.tensor([7, 2, 11])
    assert torch.equal(actor.matches("job", "test", plan, targets[own], own), expected[:, own])
    assert torch.equal(local.matches("test", plan, targets[:5], pairs=5), expected[:, :5])
    # the predicted labels are what the matches compare to the targets
    predicted = actor.predictions("job", "test", plan.slice(1, 4))
    assert torch.equal(predicted, local.predictions("test", plan)[1:4])
    assert torch.equal((predicted == targets).all(-1), expected[1:4])


def test_actor_refuses_a_job_it_does_not_hold(tmp_path: Path) -> None:
    actor = InterventionActor(device="cpu")
    with pytest.raises(PlotError, match="holds no net"):
        actor.signatures("nope", [], {})
    net_dir = _net_dir(tmp_path)
    actor.load_job("job", str(net_dir), _traces(net_dir), 64)
    actor.release_job("job")
    assert actor.jobs() == []


def test_actor_loads_a_net_once_per_content_digest(tmp_path: Path) -> None:
    first = _net_dir(tmp_path, seed=0)
    copy = save_net(load_net(first), tmp_path / "copy")  # same bytes, other directory
    actor = InterventionActor(device="cpu")
    digest = actor.load_job("a", str(first), _traces(first), 64)
    assert actor.load_job("b", str(copy), _traces(first), 64) == digest
    assert actor.nets.get(digest) is actor._jobs["a"].net is actor._jobs["b"].net


def test_net_cache_evicts_least_recently_used_over_its_budget(tmp_path: Path) -> None:
    nets = {seed: load_net(_net_dir(tmp_path, seed)) for seed in range(3)}
    cache = NetCache(budget_bytes=2 * net_bytes(nets[0]))
    cache.put("0", nets[0])
    cache.put("1", nets[1])
    assert cache.get("0") is nets[0]  # "1" is now the least recently used
    cache.put("2", nets[2])
    assert "1" not in cache and "0" in cache and "2" in cache
    big = NetCache(budget_bytes=1)
    big.put("0", nets[0])
    assert "0" in big  # the newest net stays even alone over budget


@pytest.mark.parametrize(("count", "chunks"), [(10, 3), (2, 8), (7, 7), (1, 1)])
def test_chunk_bounds_cover_every_item_once(count: int, chunks: int) -> None:
    bounds = chunk_bounds(count, chunks)
    assert len(bounds) == min(count, chunks)
    assert [i for a, b in bounds for i in range(a, b)] == list(range(count))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1


def _bank(seed: int, pairs: int = 24) -> PairBank:
    generator = torch.Generator().manual_seed(seed)
    return PairBank(base=torch.randn(pairs, 6, generator=generator),
                    source=torch.randn(pairs, 6, generator=generator),
                    base_labels=torch.randint(0, 3, (pairs, 1), generator=generator),
                    counterfactual_labels={"V": torch.randint(0, 3, (pairs, 1),
                                                              generator=generator)})


def test_a_cancelled_job_runs_no_further_micro_batch_on_the_actor(tmp_path: Path) -> None:
    net_dir = _net_dir(tmp_path)
    actor = InterventionActor(device="cpu")
    actor.load_job("job", str(net_dir), _traces(net_dir), max_rows=4)
    sites = neuron_sites(location_sites(load_net(net_dir).widths))
    actor.signatures("job", sites[:2], {})
    ran = actor.stats()["micro_batches"]
    assert ran == 2 * 12 // 4  # 2 sites × 12 pairs, 4 rows per micro-batch
    assert actor.cancel_job("job") and not actor.cancel_job("other job")
    with pytest.raises(JobCancelled):
        actor.signatures("job", sites, {})
    with pytest.raises(JobCancelled):
        actor.matches("job", "test", Interventions({"layer:1": torch.rand(3, 8)}, {}),
                      torch.zeros(12, 1, dtype=torch.long))
    assert actor.stats() == {"micro_batches": ran, "das_trainings": 0,
                             "interruptions": [(ran, ran), (ran, ran)]}
    actor.release_job("job")  # the flag goes with the job: a new load of the key runs again
    actor.load_job("job", str(net_dir), _traces(net_dir), max_rows=4)
    actor.signatures("job", sites[:1], {})
    assert actor.stats()["micro_batches"] == ran + 3


def test_actor_trains_das_as_the_engine_does_in_process(tmp_path: Path) -> None:
    net_dir = _net_dir(tmp_path)
    net = load_net(net_dir)
    banks = Banks(_bank(0), _bank(1), _bank(2))
    traces = {split: trace_bank(net, getattr(banks, split))
              for split in ("fit", "calibration", "test")}
    spec = DasSpec(mode="full", dims=[2], max_epochs=3, batch_size=8)
    inputs = LevelInputs.local(net, banks, traces, CouplingSpec(), CalibrationSpec(), 64)
    target = DasTarget("V", "layer:1", (2,))
    want, want_passes = train_target(target, 2, inputs, spec, seed=5)

    actor = InterventionActor(device="cpu")
    actor.load_job("job", str(net_dir), traces, 64)
    got, passes = actor.train_das("job", DasTraining(target, 2), banks, CouplingSpec(),
                                  CalibrationSpec(), spec, 5)
    assert passes == want_passes
    assert (got.site, got.dim, got.epochs, got.iia_test, got.iia_calibration) == (
        want.site, want.dim, want.epochs, want.iia_test, want.iia_calibration)
    assert got.loss == pytest.approx(want.loss, rel=1e-6)


def test_slots_count_free_and_held_gpus_or_fall_back_without_them() -> None:
    assert slots_for(free_gpus=2.0, held_gpus=2.0, fallback=2) == 4
    assert slots_for(free_gpus=0.0, held_gpus=1.0, fallback=2) == 1  # others hold the rest
    assert slots_for(free_gpus=0.5, held_gpus=1.0, fallback=2) == 1  # a GPU share is no slot
    assert slots_for(free_gpus=3.0, held_gpus=0.0, fallback=2) == 2  # CPU actors: fallback


def test_an_actor_traces_the_banks_itself_per_scope_and_describes_the_net(
        tmp_path: Path) -> None:
    net_dir = save_net(tiny(), tmp_path / "token-net")
    outline = InterventionActor(device="cpu").describe(str(net_dir))
    assert isinstance(outline, NetOutline) and list(outline.parameters()) == []
    assert outline.widths == load_net(net_dir).widths and outline.config == TOKEN_CONFIG

    def bank(seed: int) -> PairBank:
        return PairBank(token_ids(6, seed), token_ids(6, seed + 50),
                        torch.zeros(6, 1, dtype=torch.long),
                        {"V": torch.ones(6, 1, dtype=torch.long)})

    banks = Banks(bank(0), bank(1), bank(2))
    net = load_net(net_dir)
    full = {s: trace_bank(net, getattr(banks, s), 64) for s in ("fit", "calibration", "test")}
    local = LocalBackend(net, full, 64)
    actor = InterventionActor(device="cpu")
    clean = actor.load_banks("job", str(net_dir), banks, 64)
    # the driver's copy: the clean logits, no activation
    assert all(t.activation_device() is None for t in clean.values())
    assert_close(clean["test"].base.logits, full["test"].base.logits, rtol=0, atol=0)
    sites = [s for s in location_sites(net.widths) if s.location.startswith("resid:1/")][:3]
    # the examples traced for the scope (its three banks), none again for the same scope
    assert actor.scope_job("job", [s.location for s in sites]) == 2 * 3 * 6
    assert actor.scope_job("job", [s.location for s in sites]) == 0
    assert_close(actor.signatures("job", sites, {}), local.signatures(sites, {}))
    frames = actor.pca_frames("job", [sites[0].location])
    assert_close(frames[sites[0].location], local.pca_frames([sites[0].location])[
        sites[0].location])
    # the depth check's scope: the test bank alone, for its locations; same predictions
    later = ["resid:2/pos:last", "resid:2/pos:3"]
    actor.scope_job("job", later, ["test"])
    plan = Interventions({later[0]: torch.ones(1, net.widths[later[0]])}, {})
    assert torch.equal(actor.predictions("job", "test", plan), local.predictions("test", plan))
    held = actor._job("job").traces
    assert [t.activation_device() is not None for t in held.values()] == [False, False, True]
