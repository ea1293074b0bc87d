"""The high-level causal model H: variables, vectorised mechanisms, interchange interventions.

Every value is a batch tensor ``(B,)`` (or ``(B, ...)``); a mechanism maps its parents'
batch tensors to its own, so one call evaluates the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from core.errors import TaskError

Mechanism = Callable[..., Tensor]


@dataclass(frozen=True)
class Variable:
    """One node of a causal model.

    Attributes:
        name: unique name of the node.
        parents: names of the nodes its mechanism reads, in the order it takes them.
        mechanism: ``mechanism(*parent_values) -> value`` over batch tensors; ``None``
            marks an exogenous input that ``run`` takes from its ``inputs``.
    """

    name: str
    parents: tuple[str, ...] = ()
    mechanism: Mechanism | None = None

    @property
    def is_input(self) -> bool:
        return self.mechanism is None


class CausalModel:
    """A DAG of variables evaluated in topological order over a batch.

    Args:
        variables: the nodes, in any order; inputs have no mechanism.
        outputs: the nodes whose values form the output label heads, in head order.

    Raises:
        TaskError: a duplicate name, an unknown parent or output, or a cycle.

    Example:
        >>> m = CausalModel([Variable("x"), Variable("y", ("x",), lambda x: 1 - x)], ["y"])
        >>> m.run({"x": torch.tensor([0, 1])})["y"]
        tensor([1, 0])
    """

    def __init__(self, variables: Iterable[Variable], outputs: Iterable[str]) -> None:
        nodes: dict[str, Variable] = {}
        for variable in variables:
            if variable.name in nodes:
                raise TaskError("duplicate variable", f"causal.{variable.name}")
            nodes[variable.name] = variable
        for variable in nodes.values():
            for parent in variable.parents:
                if parent not in nodes:
                    raise TaskError(f"unknown parent {parent!r}", f"causal.{variable.name}")
        self.nodes = nodes
        self.order = _topological_order(nodes)
        self.outputs = tuple(outputs)
        for name in self.outputs:
            if name not in nodes:
                raise TaskError("unknown output variable", f"causal.{name}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the exogenous input variables, in topological order."""
        return tuple(name for name in self.order if self.nodes[name].is_input)

    def run(
        self, inputs: Mapping[str, Tensor], fixed: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        """Evaluate every variable on a batch, holding the ``fixed`` ones at given values.

        Args:
            inputs: input name -> (B, ...) tensor, one per input variable.
            fixed: variable name -> (B, ...) tensor that replaces its mechanism's value
                (an intervention); descendants are computed from the fixed value.

        Returns:
            variable name -> (B, ...) tensor for every node.

        Raises:
            TaskError: a missing input or an unknown variable in ``fixed``.
        """
        fixed = fixed or {}
        for name in fixed:
            if name not in self.nodes:
                raise TaskError("unknown variable to intervene on", f"causal.{name}")
        values: dict[str, Tensor] = {}
        for name in self.order:
            node = self.nodes[name]
            if name in fixed:
                values[name] = fixed[name]
            elif node.mechanism is None:
                if name not in inputs:
                    raise TaskError("missing input", f"causal.{name}")
                values[name] = inputs[name]
            else:
                values[name] = node.mechanism(*(values[p] for p in node.parents))
        return values

    def interchange(
        self,
        base_inputs: Mapping[str, Tensor],
        source_inputs: Mapping[str, Tensor],
        variables: Iterable[str],
    ) -> dict[str, Tensor]:
        """Run on the base with ``variables`` set to the values they take on the source.

        Args:
            base_inputs: input name -> (B, ...) tensor of the base runs.
            source_inputs: input name -> (B, ...) tensor of the source runs.
            variables: the variables to interchange (jointly).

        Returns:
            variable name -> (B, ...) tensor of the intervened base run.
        """
        source = self.run(source_inputs)
        names = list(variables)
        for name in names:
            if name not in self.nodes:
                raise TaskError("unknown variable to interchange", f"causal.{name}")
        return self.run(base_inputs, fixed={name: source[name] for name in names})

    def output_labels(self, values: Mapping[str, Tensor]) -> Tensor:
        """(B, O) long: the output variables of a run, stacked as label heads."""
        return torch.stack([values[name].long() for name in self.outputs], dim=-1)


def _topological_order(nodes: Mapping[str, Variable]) -> tuple[str, ...]:
    """Kahn's order over ``nodes``, stable in their given order."""
    remaining = {name: set(node.parents) for name, node in nodes.items()}
    order: list[str] = []
    while remaining:
        ready = [name for name, parents in remaining.items() if not parents]
        if not ready:
            raise TaskError("the variables form a cycle", f"causal.{next(iter(remaining))}")
        for name in ready:
            order.append(name)
            del remaining[name]
        for parents in remaining.values():
            parents.difference_update(ready)
    return tuple(order)
