"""The built-in causal tasks by name, and the seeded fit / calibration / test banks of a job."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from core.causal.addition import BinaryAddition
from core.causal.bank import Banks
from core.causal.heq import HierarchicalEquality
from core.causal.mcqa import LETTERS, OBJECTS, MultipleChoiceColours
from core.causal.paper_adder import adder_paper_banks
from core.causal.paper_heq import heq_paper_banks
from core.causal.task import CausalTask
from core.errors import TaskError
from core.spec import PairsSpec

# name -> (constructor, {param: (smallest, largest) allowed value})
_SEED_RANGE = (-(2**63), 2**63 - 1)  # the entity table's torch seed is an int64
MAX_NUM_BITS = 30  # operands are drawn as int64 sums of 2**num_bits
BUILTIN_TASKS: dict[str, tuple[Callable[..., CausalTask], dict[str, tuple[int, int]]]] = {
    "hierarchical_equality": (
        HierarchicalEquality,
        {"num_entities": (2, 10_000), "embedding_dim": (1, 1024), "seed": _SEED_RANGE},
    ),
    "binary_addition": (BinaryAddition, {"num_bits": (2, MAX_NUM_BITS)}),
    "mcqa": (MultipleChoiceColours,
             {"num_objects": (1, len(OBJECTS)), "num_options": (2, len(LETTERS))}),
}


def check_task_params(name: str, params: Mapping[str, Any] | None = None) -> None:
    """Refuse an unknown built-in task, an unknown parameter or one out of range, without
    building anything (the service calls this at submission).

    Raises:
        TaskError: naming ``task.builtin`` for an unknown name, or ``task.params.<key>``
            for an unknown key or a value that is not an integer in range.
    """
    if name not in BUILTIN_TASKS:
        known = ", ".join(sorted(BUILTIN_TASKS))
        raise TaskError(f"unknown built-in task {name!r} (known: {known})", "task.builtin")
    schema = BUILTIN_TASKS[name][1]
    for key, value in (params or {}).items():
        where = f"task.params.{key}"
        if key not in schema:
            allowed = ", ".join(schema)
            raise TaskError(f"unknown parameter {key!r} of {name} (allowed: {allowed})", where)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TaskError(f"must be an integer, got {value!r}", where)
        low, high = schema[key]
        if not low <= value <= high:
            raise TaskError(f"must be in [{low}, {high}], got {value}", where)


def build_task(name: str, params: Mapping[str, Any] | None = None) -> CausalTask:
    """The built-in task ``name`` built with ``params`` (defaults for missing keys).

    Args:
        name: a key of ``BUILTIN_TASKS`` (``hierarchical_equality``, ``binary_addition``).
        params: integer parameters of that task.

    Returns:
        The task, its ``params`` holding every parameter including defaults.

    Raises:
        TaskError: see ``check_task_params``.
    """
    check_task_params(name, params)
    return BUILTIN_TASKS[name][0](**dict(params or {}))


def bank_generators(seed: int) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """Three independent generators (fit, calibration, test) derived from one seed."""
    children = np.random.SeedSequence(seed % 2**64).spawn(3)  # negative seeds too
    fit, calibration, test = (
        torch.Generator().manual_seed(int(child.generate_state(1, dtype=np.uint64)[0] >> 1))
        for child in children
    )
    return fit, calibration, test


def make_banks(task: CausalTask, pairs: PairsSpec) -> Banks:
    """The fit, calibration and test banks of a job, each from its own seeded generator.

    Args:
        task: the built-in task that samples the pairs.
        pairs: bank sizes, the seed and the target change share.

    Returns:
        Banks whose sizes are ``pairs.fit``, ``pairs.calibration``, ``pairs.test`` (the
        ``paper`` scheme: see ``paper_banks``); the same seed gives identical banks.
    """
    fit, calibration, test = bank_generators(pairs.seed)
    if pairs.scheme == "paper":
        return paper_banks(task, pairs, (fit, calibration, test))
    share = pairs.changed_share
    return Banks(
        fit=task.sample_bank(pairs.fit, fit, share),
        calibration=task.sample_bank(pairs.calibration, calibration, share),
        test=task.sample_bank(pairs.test, test, share),
    )


def paper_banks(task: CausalTask, pairs: PairsSpec,
                generators: tuple[torch.Generator, torch.Generator, torch.Generator]) -> Banks:
    """The PLOT authors' banks of a built-in task (``pairs.scheme: paper``).

    HEQ: ``pairs.fit`` fit pairs, ``pairs.calibration`` WX-only / YZ-only calibration pairs
    (or, with ``calibration_scope: per_variable``, each variable's own sensitive and
    invariant pairs) and 4 x ``pairs.test`` test pairs (``core.causal.paper_heq``); the
    adder: banks of ``size // 26`` whole bases with their structured sources
    (``core.causal.paper_adder``); MCQA: ``MultipleChoiceColours.sample_paper_bank`` for each bank.
    """
    if isinstance(task, HierarchicalEquality):
        return heq_paper_banks(task, pairs.fit, pairs.calibration, pairs.test, generators,
                               per_variable_calibration=pairs.calibration_scope ==
                               "per_variable")
    if pairs.calibration_scope == "per_variable":
        raise TaskError(f"{task.name} has no per-variable calibration bank (only "
                        "hierarchical_equality's paper scheme has)", "pairs.calibration_scope")
    if isinstance(task, BinaryAddition):
        return adder_paper_banks(task, pairs.fit, pairs.calibration, pairs.test, generators[0])
    if isinstance(task, MultipleChoiceColours):
        fit, calibration, test = generators
        return Banks(fit=task.sample_paper_bank(pairs.fit, fit),
                     calibration=task.sample_paper_bank(pairs.calibration, calibration),
                     test=task.sample_paper_bank(pairs.test, test))
    raise TaskError(f"{task.name} has no paper scheme", "pairs.scheme")
