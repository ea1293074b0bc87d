"""Effect signatures of a hand-built bank and net against hand-computed effects."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from core.causal.bank import PairBank
from core.engine import trace_bank
from core.nets.mlp import MLP
from core.signatures import (
    abstract_signatures,
    neural_signatures,
    output_probabilities,
    site_interventions,
)
from core.sites import Site

LN3 = math.log(3.0)  # logits (ln 3, 0) give probabilities (0.75, 0.25)


def identity_net(layers: int = 1) -> MLP:
    """logits = h = relu(x) for x >= 0: neuron i of every layer is class i's logit."""
    net = MLP({"arch": "mlp", "input_dim": 2, "hidden_dims": [2] * layers, "num_classes": 2,
               "activation": "relu"})
    with torch.no_grad():
        for linear in net.linears:
            assert isinstance(linear, torch.nn.Linear)
            linear.weight.copy_(torch.eye(2))
            linear.bias.zero_()
    return net.eval().requires_grad_(False)


def identity_bank() -> PairBank:
    # pair 0: base (ln3, 0) -> (.75, .25); source (0, ln3)
    # pair 1: base (0, 0)   -> (.5, .5);   source (ln3, ln3)
    base = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    source = torch.tensor([[0.0, LN3], [LN3, LN3]])
    labels = torch.zeros(2, 1, dtype=torch.long)
    return PairBank(base, source, labels, {"V": labels})


SITES = [Site("layer:0", "dims", 0, 1), Site("layer:0", "dims", 1, 2), Site("layer:0", "all", 0, 2)]
# patched logits -> probabilities -> minus the base's
EXPECTED = torch.tensor([
    [[-0.25, 0.25], [0.25, -0.25]],  # neuron 0: (0, 0) -> (.5, .5); (ln3, 0) -> (.75, .25)
    [[-0.25, 0.25], [-0.25, 0.25]],  # neuron 1: (ln3, ln3) -> (.5, .5); (0, ln3) -> (.25, .75)
    [[-0.50, 0.50], [0.00, 0.00]],  # both: (0, ln3) -> (.25, .75); (ln3, ln3) -> (.5, .5)
])


def test_abstract_signature_is_counterfactual_onehot_minus_base_onehot() -> None:
    base_labels = torch.tensor([[0, 2], [1, 1]])  # (P=2, O=2), 3 classes
    bank = PairBank(torch.zeros(2, 1), torch.zeros(2, 1), base_labels,
                    {"A": torch.tensor([[2, 2], [1, 1]]), "B": base_labels.clone()})
    signatures = abstract_signatures(bank, ["A", "B"], num_classes=3)
    assert signatures.shape == (2, 2, 6)  # (V, P, O * C)
    expected_a = torch.tensor([[-1.0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    assert_close(signatures[0], expected_a)
    assert_close(signatures[1], torch.zeros(2, 6))  # B never moves the output


def test_output_probabilities_are_a_softmax_per_head() -> None:
    logits = torch.tensor([[[LN3, 0.0], [0.0, 0.0]]])  # (B=1, O=2, C=2)
    assert_close(output_probabilities(logits), torch.tensor([[0.75, 0.25, 0.5, 0.5]]))


def test_site_interventions_are_hard_zero_one_coefficients() -> None:
    plan = site_interventions(SITES, "layer:0", 2, None, torch.device("cpu"))
    assert_close(plan.coefficients["layer:0"], torch.tensor([[1.0, 0], [0, 1], [1, 1]]))
    assert plan.frames == {}
    frame = torch.eye(2)
    pca = site_interventions([Site("layer:0", "pca", 0, 1)], "layer:0", 2, frame[:, :1],
                             torch.device("cpu"))
    assert pca.coefficients["layer:0"].shape == (1, 1)  # one coefficient per frame direction
    assert_close(pca.frames["layer:0"], frame[:, :1])


@pytest.mark.parametrize("max_rows", [1, 3, 64])
def test_neural_signatures_match_hand_computed_effects(max_rows: int, device: torch.device
                                                       ) -> None:
    net = identity_net().to(device)
    traces = trace_bank(net, identity_bank())
    seen: list[tuple[int, int]] = []
    signatures = neural_signatures(net, traces, SITES, {}, max_rows,
                                   progress=lambda done, total: seen.append((done, total)))
    assert signatures.shape == (3, 2, 2) and signatures.device == traces.base.logits.device
    assert_close(signatures.cpu(), EXPECTED)
    assert seen[-1] == (6, 6)  # every (site, pair) forward counted once


def test_a_site_order_across_locations_is_kept() -> None:
    net = identity_net(layers=2)
    traces = trace_bank(net, identity_bank())
    # layer 1 is an identity copy of layer 0: the same site there has the same effect
    sites = [Site("layer:1", "dims", 1, 2), SITES[0], Site("layer:1", "dims", 0, 1)]
    signatures = neural_signatures(net, traces, sites, {}, 64)
    assert_close(signatures, EXPECTED[[1, 0, 0]])
