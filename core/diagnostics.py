"""Coupling diagnostics: how much a level's coupling says, per variable and per pair of them.

Per variable (on the plan its handle was calibrated from): the entropy of its row relative
to uniform, the margin between its best and second-best site, and the null row's mass. Per
pair of variables: how alike their abstract signatures are and how much their coupling rows
overlap. Balanced transport cannot separate two variables whose signatures coincide: it
splits their mass evenly over the same sites, so such a pair is named in a warning, as is a
row that is nearly uniform. Pure functions; no forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from core.calibrate import rank_sites
from core.coupling import UNIFORM_ENTROPY, relative_entropy

SIMILAR_SIGNATURES = 0.95  # signature cosine at or above which two variables look identical


@dataclass(frozen=True)
class VariableDiagnostics:
    """One variable's row of the plan its handle was calibrated from.

    Attributes:
        entropy: entropy of the normalised row over the level's (group's) sites divided by
            log S: 1 is uniform (the coupling says nothing), 0 one site.
        best_site, second_site: the two sites with the most mass (second None with one site).
        margin: normalised mass of the best site minus that of the second (often 0 under
            balanced marginals, when both hold all of their sites' mass).
        cost_margin: cost of the second site minus that of the best (costs are in [0, 1]).
        null_mass: the null row's share of the plan's mass (None without a null row; fixed
            at 1 / (V + 1) by the exact variable marginal).
        null_share_kept: the null row's share of the mass on this variable's kept sites: near
            1, the sites it keeps are better explained as realising no variable.
    """

    entropy: float
    best_site: str
    second_site: str | None
    margin: float
    cost_margin: float
    null_mass: float | None
    null_share_kept: float | None

    @property
    def near_uniform(self) -> bool:
        return self.entropy > UNIFORM_ENTROPY


@dataclass(frozen=True)
class PairDiagnostics:
    """How alike two variables look to the coupling.

    Attributes:
        signature_cosine: cosine of their flattened abstract signatures on the fit bank
            (1 when both are all zero: neither ever moves the output).
        label_agreement: share of fit pairs, among those where either variable's interchange
            changes the output, on which both give the same counterfactual label (1 when
            there is no such pair).
        row_overlap: Σ_s min(p_a(s), p_b(s)) of their normalised coupling rows (1: the
            same distribution over sites).
    """

    first: str
    second: str
    signature_cosine: float
    label_agreement: float
    row_overlap: float

    @property
    def similar(self) -> bool:
        return self.signature_cosine >= SIMILAR_SIGNATURES


@dataclass(frozen=True)
class CouplingDiagnostics:
    """A level's diagnostics: per variable and per pair of variables (job order)."""

    variables: dict[str, VariableDiagnostics]
    pairs: list[PairDiagnostics]


def diagnose_row(plan: Tensor, row: int, null_row: bool, kept: Sequence[int],
                 cost_row: Tensor, site_ids: Sequence[str]) -> VariableDiagnostics:
    """Diagnostics of variable row ``row`` of a solved plan.

    Args:
        plan: (R, S) transport mass; with ``null_row`` the last row is the null variable.
        kept: indices of the sites this variable keeps (into the S columns).
        cost_row: (S,) the variable's cost row, to break mass ties as calibration does.
        site_ids: the S site ids.
    """
    mass = plan[row].double()
    normalised = mass / mass.sum().clamp_min(1e-300)  # (S,)
    order = rank_sites(normalised, cost_row)
    second = order[1] if len(order) > 1 else None
    margin = float(normalised[order[0]] - (normalised[second] if second is not None else 0.0))
    cost_margin = float(cost_row[second] - cost_row[order[0]]) if second is not None else 0.0
    null_mass = null_share = None
    if null_row:
        null = plan[-1].double()
        null_mass = float(null.sum() / plan.double().sum())
        on_kept = plan[:, list(kept)].double().sum()
        null_share = float(null[list(kept)].sum() / on_kept) if float(on_kept) > 0 else 0.0
    return VariableDiagnostics(
        entropy=float(relative_entropy(normalised.unsqueeze(0))[0]),
        best_site=site_ids[order[0]],
        second_site=site_ids[second] if second is not None else None,
        margin=margin, cost_margin=cost_margin, null_mass=null_mass, null_share_kept=null_share)


def diagnose_pairs(variables: Sequence[str], signatures: Tensor,
                   labels: Mapping[str, Tensor], base_labels: Tensor,
                   rows: Mapping[str, Tensor]) -> list[PairDiagnostics]:
    """Every pair of variables, in job order.

    Args:
        signatures: (V, P, Y) abstract signatures on the fit bank, in ``variables`` order.
        labels: variable -> (P, O) counterfactual labels; base_labels: (P, O).
        rows: variable -> (S,) its normalised coupling row over the level's sites.
    """
    flat = signatures.flatten(1).double()  # (V, P * Y)
    norms = flat.norm(dim=1)
    out = []
    for a in range(len(variables)):
        for b in range(a + 1, len(variables)):
            first, second = variables[a], variables[b]
            if float(norms[a]) == 0.0 and float(norms[b]) == 0.0:
                cosine = 1.0
            else:
                cosine = float(F.cosine_similarity(flat[a], flat[b], dim=0, eps=1e-12))
            moved = ((labels[first] != base_labels).any(-1)
                     | (labels[second] != base_labels).any(-1))  # (P,)
            same = (labels[first] == labels[second]).all(-1)
            agreement = float(same[moved].double().mean()) if bool(moved.any()) else 1.0
            overlap = float(torch.minimum(rows[first].double(), rows[second].double()).sum())
            out.append(PairDiagnostics(first, second, cosine, agreement, overlap))
    return out


def coupling_warnings(variables: Sequence[str], diagnostics: CouplingDiagnostics,
                      every_plan_uniform: Sequence[str], silent: Sequence[str]) -> list[str]:
    """Warnings for a level: near-uniform rows, look-alike pairs, variables with no effect.

    Args:
        every_plan_uniform: variables whose row is nearly uniform in every plan of the grid.
        silent: variables whose interchange never changes the output on the fit bank.
    """
    out = []
    for variable in silent:
        out.append(f"{variable} never changes the output on the fit pairs: its signature is "
                   "the null row's, so no site can be told to realise it")
    for variable in variables:
        row = diagnostics.variables.get(variable)
        if variable in every_plan_uniform:
            out.append(f"every plan's row for {variable} is nearly uniform: its sites are "
                       "hard to tell apart at this granularity, the handle rests on "
                       "calibration alone")
        elif row is not None and row.near_uniform:
            out.append(f"the row of {variable} in its chosen plan is nearly uniform "
                       f"(entropy {row.entropy:.3f} of uniform; best site {row.best_site} "
                       f"ahead of the second by {row.margin:.4f}): the coupling barely ranks "
                       "its sites")
    for pair in diagnostics.pairs:
        if pair.similar:
            out.append(f"{pair.first} and {pair.second} have nearly identical signatures "
                       f"(cosine {pair.signature_cosine:.3f}; the same counterfactual label on "
                       f"{100 * pair.label_agreement:.1f} % of the fit pairs where either "
                       f"changes the output; coupling rows overlap {pair.row_overlap:.3f}): "
                       "the coupling cannot tell them apart and splits their mass between the "
                       "same sites")
    return out
