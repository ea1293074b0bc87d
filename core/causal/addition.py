"""Binary addition: two n-bit numbers fed LSB first, one bit pair per step, as a ripple adder.

Carries ``C_{i+1} = majority(a_i, b_i, C_i)`` with ``C_0 = 0``; sum bits
``S_i = a_i xor b_i xor C_i``. Outputs are ``S_0 .. S_{n-1}`` then the carry out ``C_n``;
the localizable variables are the inner carries ``C_1 .. C_{n-1}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from core.causal.generated import GeneratedTask
from core.causal.model import CausalModel, Variable


def _majority(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    return (a & b) | (a & c) | (b & c)


def _xor3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    return a ^ b ^ c


def adder_causal_model(num_bits: int) -> CausalModel:
    """The ripple-carry adder over inputs ``a{i}``, ``b{i}`` (B,) long in {0, 1}."""
    variables = [Variable(f"{side}{i}") for i in range(num_bits) for side in "ab"]
    # step 0 has no carry in: C_1 = a_0 and b_0, S_0 = a_0 xor b_0
    variables.append(Variable("S0", ("a0", "b0"), torch.bitwise_xor))
    variables.append(Variable("C1", ("a0", "b0"), torch.bitwise_and))
    for i in range(1, num_bits):
        parents = (f"a{i}", f"b{i}", f"C{i}")
        variables.append(Variable(f"S{i}", parents, _xor3))
        variables.append(Variable(f"C{i + 1}", parents, _majority))
    outputs = [f"S{i}" for i in range(num_bits)] + [f"C{num_bits}"]
    return CausalModel(variables, outputs)


class BinaryAddition(GeneratedTask):
    """The n-bit binary addition task (implements ``CausalTask``).

    Args:
        num_bits: bits per operand n; the net runs n steps and has n + 1 binary heads.
    """

    name: str = "binary_addition"

    def __init__(self, num_bits: int = 4) -> None:
        self.params: dict[str, Any] = {"num_bits": num_bits}
        self.num_bits = num_bits
        self.variables: tuple[str, ...] = tuple(f"C{i}" for i in range(1, num_bits))
        self.input_shape: tuple[int, ...] = (num_bits, 2)
        self.output_shape: tuple[int, int] = (num_bits + 1, 2)
        self.causal = adder_causal_model(num_bits)

    def split_bits(self, a: Tensor, b: Tensor) -> dict[str, Tensor]:
        """Causal inputs ``a{i}``, ``b{i}`` (B,) from operands a, b (B,) long."""
        inputs = {}
        for i in range(self.num_bits):
            inputs[f"a{i}"] = (a >> i) & 1
            inputs[f"b{i}"] = (b >> i) & 1
        return inputs

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """(B, n, 2) float: row t holds the bit pair (a_t, b_t)."""
        steps = [
            torch.stack([inputs[f"a{i}"], inputs[f"b{i}"]], dim=-1) for i in range(self.num_bits)
        ]
        return torch.stack(steps, dim=1).float()

    def sample_inputs(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """n uniformly random operand pairs, as causal inputs."""
        a = torch.randint(2**self.num_bits, (n,), generator=generator)
        b = torch.randint(2**self.num_bits, (n,), generator=generator)
        return self.split_bits(a, b)




    def default_net_config(self) -> dict[str, Any]:
        return {
            "arch": "gru",
            "input_size": 2,
            "hidden_size": 16,
            "num_steps": self.num_bits,
            "num_classes": 2,
        }

    def default_levels(self) -> list[dict[str, Any]]:
        # stage A couples carries with timesteps; stage B couples each carry only with the
        # principal directions of its own chosen timestep (a whole-state interchange also
        # moves that step's sum bit, so stage A handles are coarse by construction)
        return [{"granularity": "step", "keep": 1},
                {"granularity": "pca", "band_size": 1, "scope": "per_variable"}]
