"""The pyvene peer of bench/compare.py: full DAS through pyvene on the planted rotated net.

pyvene comes with the bench extra, which deploy/install-local.sh installs.
"""

from __future__ import annotations

import pytest

from bench.peers.pyvene_das import pyvene_full_das, train_pyvene_das
from core.causal.bank import Banks
from core.das import DasConfig
from tests.unit.core.planted_rotated import planted_rotated_bank, planted_rotated_mlp

CONFIG = DasConfig(lr=0.05, batch_size=64, min_epochs=15, seed=0)


@pytest.fixture(scope="module")
def banks() -> Banks:
    return Banks(*(planted_rotated_bank(256, seed) for seed in range(3)))


def test_pyvene_das_recovers_the_planted_subspace_at_the_right_k(banks: Banks) -> None:
    net = planted_rotated_mlp().float()
    right = train_pyvene_das(net, banks, "P", layer=1, k=2, config=CONFIG)
    assert right.site == "layer:1/das:2"
    assert right.iia_calibration >= 0.99 and right.iia_test >= 0.99
    too_small = train_pyvene_das(net, banks, "P", layer=1, k=1, config=CONFIG)
    assert too_small.iia_test < 0.9  # P spans two rotated directions


def test_pyvene_full_das_selects_on_calibration(banks: Banks) -> None:
    net = planted_rotated_mlp().float()
    result = pyvene_full_das(net, banks, [2], CONFIG)
    assert result["trainings"] == 2 * 1 * 2  # layers × ks × variables
    # layer 0 holds a, b, c along nearly parallel directions: only layer 1 isolates P
    assert result["sites"]["P"] == ["layer:1/das:2"]
    assert result["iia"]["P"] >= 0.99
    by_site = {(r["site"], r["variable"]): r["iia_calibration"] for r in result["runs"]}
    assert by_site[("layer:0/das:2", "P")] < by_site[("layer:1/das:2", "P")]
    assert result["forward_passes"] > 0
