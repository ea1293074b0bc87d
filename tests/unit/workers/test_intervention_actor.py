"""InterventionActor as a plain class (no Ray): same numbers as the in-process executor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from core.engine import BankTraces, Interventions
from core.errors import PlotError
from core.executors import LocalExecutor
from core.nets.io import load_net, save_net
from core.nets.mlp import MLP
from core.sites import location_sites, neuron_sites
from workers.intervention_actor import InterventionActor, NetCache, net_bytes
from workers.ray_executor import chunk_bounds

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


def test_actor_signatures_and_matches_equal_the_local_executor(tmp_path: Path) -> None:
    net_dir = _net_dir(tmp_path)
    traces = _traces(net_dir)
    local = LocalExecutor(load_net(net_dir), traces, max_rows=64)
    actor = InterventionActor(device="cpu")
    actor.load_job("job", str(net_dir), traces, 64)
    sites = neuron_sites(location_sites(local.net.widths))
    assert_close(actor.signatures("job", sites[3:9], {}), local.signatures(sites, {})[3:9])

    coefficients = torch.rand(5, 8)
    plan = Interventions({"layer:1": coefficients}, {})
    targets = torch.randint(0, 3, (12, 1))
    expected = local.matches("test", plan, targets)
    assert torch.equal(actor.matches("job", "test", plan.slice(1, 4), targets), expected[1:4])


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
