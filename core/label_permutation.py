"""The label-permutation control: couple a level's sites with labels that carry no structure.

Each variable's abstract signature rows are permuted across the fit pairs (its (base,
counterfactual) labels stay together, so the signature keeps its distribution but loses its
pairing with the inputs) and coupled with the level's own site signatures, with the knobs
the variable's real handle chose. No new forward pass. The mass such a coupling puts on the
sites the real coupling kept should sit near (or below) the uniform level |kept| / S; the
real coupling's should not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from core.control import NO_CONTROL, JobControl
from core.cost import cost_matrix
from core.coupling import marginals, solve_coupling
from core.spec import ControlsSpec, CostKind, CouplingSpec

if TYPE_CHECKING:  # core.result stores PermutationControl, and the level steps build results
    from core.level_steps import LevelHandles, LevelSignatures

Knobs = tuple[float | None, float | None]  # (epsilon, beta) of a plan
SEPARATION = 0.25  # share of the above-uniform range the real row must clear the control by
PERMUTATION_CHUNK = 8  # permutations drawn and coupled per micro-batch (memory: N-independent)


@dataclass(frozen=True)
class PermutationControl:
    """One variable's kept-site mass: its real coupling row against permuted-label rows.

    Attributes:
        kept: the sites the variable kept at this level.
        real_mass: the real row's normalised mass on them.
        control_mass: the same for couplings on permuted labels, mean over permutations.
        uniform_mass: |kept| / S, what a uniform row puts there (S: the sites it was
            coupled with).
        max_mass: the most a row can put there under the plan's marginals: with balanced
            marginals a site holds only its own mass, so min(1, R Σ_kept b_s) for R rows
            (variables and the null row); 1 for the unbalanced solver.
        permutations: how many permutations were averaged.
    """

    kept: list[str]
    real_mass: float
    control_mass: float
    uniform_mass: float
    max_mass: float
    permutations: int

    @property
    def separated(self) -> bool:
        """The real row clears the permuted-label (or uniform, if higher) level by at least
        a quarter of the range a row has above uniform (``max_mass - uniform_mass``)."""
        floor = max(self.control_mass, self.uniform_mass)
        return self.real_mass >= floor + SEPARATION * (self.max_mass - self.uniform_mass) - 1e-9


def permuted_signatures(signatures: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """(N, V, P, Y): each variable's (V, P, Y) signature rows permuted across the P pairs,
    with an independent permutation per variable and per copy."""
    variables, pairs = signatures.shape[:2]
    index = torch.stack([torch.stack([torch.randperm(pairs, generator=generator)
                                      for _ in range(variables)]) for _ in range(count)])
    index = index.to(signatures.device)  # (N, V, P)
    expanded = signatures.unsqueeze(0).expand(count, *signatures.shape)  # (N, V, P, Y)
    return torch.gather(expanded, 2, index[..., None].expand(*index.shape, signatures.shape[-1]))


def iter_permuted_signatures(signatures: Tensor, count: int, generator: torch.Generator,
                             chunk: int = PERMUTATION_CHUNK) -> Iterator[Tensor]:
    """``permuted_signatures(signatures, count, generator)`` in (n, V, P, Y) chunks of at
    most ``chunk`` copies, drawn as they are consumed: the same permutations in the same
    order, with memory bounded by ``chunk`` whatever ``count`` is."""
    for start in range(0, count, chunk):
        yield permuted_signatures(signatures, min(chunk, count - start), generator)


def row_mass(row: Tensor, columns: Sequence[int]) -> float:
    """Mass of a (S,) normalised row on ``columns``."""
    return float(row[list(columns)].sum()) if columns else 0.0


def permutation_controls(permuted: Tensor, site_signatures: Tensor, spec: CouplingSpec,
                         base_probs: Tensor, num_classes: int, knobs: Sequence[Knobs],
                         kept: Sequence[Sequence[int]], real_rows: Sequence[Tensor],
                         site_ids: Sequence[str]) -> list[PermutationControl]:
    """Per variable of a coupling group, its kept-site mass against permuted labels.

    Args:
        permuted: (N, V, P, Y) permuted signatures of the coupling group's V variables.
        site_signatures: (S, P, Y) the group's site signatures (the real ones, reused).
        base_probs: (P, Y) the clean base run's probabilities (for the agreement cost).
        knobs: per variable, the (epsilon, beta) of the plan its real handle chose.
        kept: per variable, the indices (into S) of the sites it kept.
        real_rows: per variable, its (S,) normalised row of that plan.
        site_ids: the S site ids.
    """
    masses = permutation_masses(permuted, site_signatures, spec, base_probs, num_classes,
                                knobs, kept)
    return build_controls(masses, int(permuted.shape[0]), site_signatures, spec, kept,
                          real_rows, site_ids)


def build_controls(masses: Sequence[float], count: int, site_signatures: Tensor,
                   spec: CouplingSpec, kept: Sequence[Sequence[int]],
                   real_rows: Sequence[Tensor], site_ids: Sequence[str]
                   ) -> list[PermutationControl]:
    """Per variable of a coupling group, its control from the mean ``masses`` over
    ``count`` permutations (other arguments as ``permutation_controls``)."""
    a, b = marginals(len(kept), site_signatures, spec.site_marginal, spec.null_row)
    out = []
    for j, columns in enumerate(kept):
        most = 1.0 if spec.solver == "unbalanced" else min(
            1.0, float(b[list(columns)].sum() / a[j]))
        out.append(PermutationControl(
            kept=[site_ids[c] for c in columns], real_mass=row_mass(real_rows[j], columns),
            control_mass=masses[j], uniform_mass=len(columns) / len(site_ids),
            max_mass=most, permutations=count))
    return out


def permutation_masses(permuted: Tensor, site_signatures: Tensor, spec: CouplingSpec,
                       base_probs: Tensor, num_classes: int, knobs: Sequence[Knobs],
                       kept: Sequence[Sequence[int]]) -> list[float]:
    """Per variable, the mean mass permuted-label couplings put on its kept sites.

    Args: as ``permutation_controls``.

    Returns:
        V masses, each the mean over the N permutations of the variable's normalised row
        mass on its kept sites.
    """
    count = int(permuted.shape[0])
    sums = permutation_mass_sums(permuted, site_signatures, spec, base_probs, num_classes,
                                 knobs, kept)
    return [total / count for total in sums]


def permutation_mass_sums(permuted: Tensor, site_signatures: Tensor, spec: CouplingSpec,
                          base_probs: Tensor, num_classes: int, knobs: Sequence[Knobs],
                          kept: Sequence[Sequence[int]],
                          kinds: Sequence[CostKind] | None = None) -> list[float]:
    """``permutation_masses`` before the mean: per variable, the sum over the N
    permutations (chunks of permutations add up).

    Args:
        kinds: per variable, the cost kind its real handle chose (None: the spec's first).
    """
    count, variables = permuted.shape[:2]
    a, b = marginals(variables, site_signatures, spec.site_marginal, spec.null_row)
    chosen = list(kinds) if kinds is not None else [spec.cost[0]] * variables
    totals = [0.0] * variables
    for n in range(count):
        rows = permuted[n]
        if spec.null_row:
            rows = torch.cat([rows, torch.zeros_like(rows[:1])])
        costs: dict[CostKind, Tensor] = {}
        solved: dict[tuple[CostKind, float | None, float | None], Tensor] = {}
        for j, (epsilon, beta) in enumerate(knobs):
            kind = chosen[j]
            if kind not in costs:
                costs[kind] = cost_matrix(kind, rows, site_signatures, base_probs, num_classes)
            key = (kind, epsilon, beta)
            if key not in solved:
                plan = solve_coupling(costs[kind], a, b, spec.solver, epsilon, beta,
                                      spec.max_iter, spec.tol)
                solved[key] = plan.variable_rows(variables)
            totals[j] += row_mass(solved[key][j], kept[j])
    return totals


def level_permutation_controls(spec: ControlsSpec | None, coupling: CouplingSpec,
                               signatures: LevelSignatures, num_classes: int,
                               site_ids: Sequence[str], handles: LevelHandles,
                               control: JobControl = NO_CONTROL
                               ) -> dict[str, PermutationControl] | None:
    """A level's label-permutation control, from its results: per variable, the mass of
    its chosen row on its kept sites against permuted-label couplings of its group with
    the knobs (cost kind, ε, β) its handle chose. None when the control is off.

    The same seed gives the same permutations at every level. They are drawn and coupled
    ``PERMUTATION_CHUNK`` at a time (memory does not grow with ``permutations``), and the
    cancel check is polled before each chunk.

    Args:
        signatures: the level's signatures (the site ones are reused: no new forward).
        site_ids: the level's S site ids.
        handles: the level's handles, per coupling group.
        control: its cancel check is polled per chunk.

    Raises:
        JobCancelled: the job was cancelled meanwhile.
    """
    if spec is None or not spec.label_permutation:
        return None
    generator = torch.Generator().manual_seed(spec.seed or 0)
    groups = [(group, list(group.plans.columns), list(group.variables.values()))
              for group in handles.groups]
    sums = [[0.0] * len(outcomes) for _, _, outcomes in groups]
    for chunk in iter_permuted_signatures(signatures.variables, spec.permutations, generator):
        control.check("cancelled during the label-permutation control",
                      "controls.permutations")
        for totals, (group, columns, outcomes) in zip(sums, groups, strict=True):
            found = permutation_mass_sums(
                chunk[:, list(group.plans.rows)], signatures.sites[columns], coupling,
                signatures.base_probs, num_classes,
                [(o.handle.epsilon, o.handle.beta) for o in outcomes], [o.kept for o in outcomes],
                [group.plans.kinds[o.kind].kind for o in outcomes])
            for j, total in enumerate(found):
                totals[j] += total
    out: dict[str, PermutationControl] = {}
    for totals, (group, columns, outcomes) in zip(sums, groups, strict=True):
        controls = build_controls(
            [total / spec.permutations for total in totals], spec.permutations,
            signatures.sites[columns], coupling, [o.kept for o in outcomes],
            [o.row for o in outcomes], [site_ids[c] for c in columns])
        out.update(zip(group.variables, controls, strict=True))
    return out
