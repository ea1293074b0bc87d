"""The coupling between abstract variables and neural sites: the only module that calls POT.

Rows are the variables (plus, by default, a *null* variable with an all-zero signature that
lets sites realising no variable keep their mass); columns are the sites. Solvers: entropic
Sinkhorn (log domain), exact EMD, and one-sided unbalanced Sinkhorn where the variable
marginal is exact and the site marginal is KL-relaxed with weight β.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import ot
import torch
from torch import Tensor

from core.errors import SolverError
from core.spec import SiteMarginal, Solver

UNIFORM_ENTROPY = 0.99  # a row whose normalised entropy exceeds this is "nearly uniform"


@dataclass(frozen=True)
class Coupling:
    """A solved transport plan.

    Attributes:
        plan: (R, S) transport mass; rows are variables, then the null row if any.
        solver: which solver produced it; epsilon / beta: its knobs (None when unused).
        n_iter: iterations the solver ran (0 for EMD).
        converged: False when the solver stopped at max_iter or reported a problem.
    """

    plan: Tensor
    solver: Solver
    epsilon: float | None
    beta: float | None
    n_iter: int
    converged: bool

    def variable_rows(self, count: int) -> Tensor:
        """(V, S) the variables' rows, each normalised to a distribution over sites."""
        rows = self.plan[:count]
        mass = rows.sum(dim=1, keepdim=True)
        return torch.where(mass > 0, rows / mass.clamp_min(1e-300), torch.zeros_like(rows))

    def near_uniform_rows(self, count: int) -> list[int]:
        """Indices of variable rows that are (nearly) uniform: the coupling says nothing."""
        if self.plan.shape[1] < 2:
            return []
        entropy = relative_entropy(self.variable_rows(count))
        return [i for i, e in enumerate(entropy.tolist()) if e > UNIFORM_ENTROPY]


def relative_entropy(rows: Tensor) -> Tensor:
    """(R,) entropy of each row of (R, S) distributions over sites, divided by log S.

    1 is the uniform distribution (the row says nothing), 0 a single site. With S = 1 every
    row is 0.
    """
    sites = rows.shape[-1]
    entropy = -(rows * rows.clamp_min(1e-300).log()).sum(dim=-1)
    return entropy / math.log(sites) if sites > 1 else torch.zeros_like(entropy)


def marginals(variables: int, site_signatures: Tensor, site_marginal: SiteMarginal,
              null_row: bool = False) -> tuple[Tensor, Tensor]:
    """Row and site marginals.

    Rows (the variables and, with ``null_row``, the null variable) share the mass equally,
    so the null row can hold the sites that realise no variable. (Giving the null row the
    mass the variables "leave", 1 - V/S, was tried: on trained HEQ nets it drained the
    variable rows and cut calibrated IIA from 0.83 to 0.70.) The site marginal is uniform
    or proportional to each site's effect mass ‖e_N[s]‖.

    Args:
        variables: V, the number of variable rows (the null row comes on top).
        site_signatures: (S, P, Y).

    Returns:
        a (V or V + 1,) and b (S,), float64, each summing to 1.
    """
    dtype, device = torch.float64, site_signatures.device
    sites = site_signatures.shape[0]
    rows = variables + 1 if null_row else variables
    a = torch.full((rows,), 1.0 / rows, dtype=dtype, device=device)
    uniform = torch.full((sites,), 1.0 / sites, dtype=dtype, device=device)
    if site_marginal == "uniform":
        return a, uniform
    mass = site_signatures.flatten(1).norm(dim=1).to(dtype)
    if float(mass.sum()) <= 0:
        return a, uniform
    mass = mass + 1e-12 * float(mass.max())  # no site with exactly zero mass
    return a, mass / mass.sum()


def solve_coupling(
    cost: Tensor,
    a: Tensor,
    b: Tensor,
    solver: Solver,
    epsilon: float | None = None,
    beta: float | None = None,
    max_iter: int = 2000,
    tol: float = 1e-9,
) -> Coupling:
    """Solve one transport problem.

    Args:
        cost: (R, S) normalised cost.
        a: (R,) row marginal; b: (S,) site marginal (both sum to 1).
        solver: ``sinkhorn``, ``emd`` or ``unbalanced``.
        epsilon: entropic regularisation (sinkhorn, unbalanced).
        beta: KL weight of the relaxed site marginal (unbalanced).

    Returns:
        The Coupling, plan in float64 on the cost's device.

    Raises:
        SolverError: a missing knob, or a plan that is not finite or has no mass.
    """
    cost64 = cost.to(torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if solver == "emd":
            plan, log = ot.emd(a, b, cost64, numItermax=max(max_iter, 100_000), log=True)
            n_iter, ok = 0, log.get("warning") is None
        elif solver == "sinkhorn":
            _require(epsilon, "coupling.epsilons")
            plan, log = ot.sinkhorn(a, b, cost64, reg=epsilon, method="sinkhorn_log",
                                    numItermax=max_iter, stopThr=tol, log=True)
            n_iter = int(log["niter"])
            ok = n_iter < max_iter - 1
        elif solver == "unbalanced":
            _require(epsilon, "coupling.epsilons")
            _require(beta, "coupling.betas")
            plan, log = ot.unbalanced.sinkhorn_unbalanced(
                a, b, cost64, reg=epsilon, reg_m=(float("inf"), beta),
                method="sinkhorn", numItermax=max_iter, stopThr=tol, log=True)
            n_iter = len(log["err"])
            # POT's stabilised variant drifts off an infinite reg_m; check the exact side
            ok = bool((plan.sum(dim=1) - a).abs().max() < 1e-6)
        else:
            raise SolverError(f"unknown solver {solver!r}", "coupling.solver")
    converged = ok and not any("converge" in str(w.message).lower() for w in caught)
    if not bool(torch.isfinite(plan).all()) or float(plan.sum()) <= 0:
        raise SolverError(
            f"the {solver} plan is not finite or has no mass (epsilon={epsilon}, beta={beta}); "
            "try a larger epsilon", "coupling")
    return Coupling(plan=plan, solver=solver, epsilon=epsilon,
                    beta=beta if solver == "unbalanced" else None,
                    n_iter=n_iter, converged=converged)


def _require(value: float | None, field: str) -> None:
    if value is None or value <= 0:
        raise SolverError("needs a positive value", field)
