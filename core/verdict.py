"""A verdict beside every handle: does it localize its variable, in plain words.

A handle's IIA alone can mislead: a variable whose interchange never changes the output
gets IIA 1 from a handle that does nothing, and an expressive handle reaches some IIA on
any net. The verdict reads the handle against what the banks and the controls say:

1. ``not_identifiable``: the variable's interchange changes the output on fewer than
   ``MIN_CHANGED_SHARE`` of the calibration pairs (never or almost never), or its
   counterfactual labels equal another variable's on at least ``IDENTICAL_AGREEMENT`` of
   the calibration pairs where either changes the output (observationally identical: no
   intervention judged by the output can tell the two apart; the other is named).
2. ``output_copy``: the plain full-vector interchange at the net's last location (the
   depth check: from there the source's state goes straight to the output) reaches the
   handle's test IIA within ``OUTPUT_COPY_MARGIN``.
3. ``no_better_than_control``: the random net's handle for the variable comes within
   ``RANDOM_NET_MARGIN`` of the real handle's test IIA, overall or on the sensitive pairs
   (where the output must change), or the coupling's mass on the kept sites is not
   separated from couplings on permuted labels (``PermutationControl.separated``).
4. ``localized``: none of the above, judged with the random-net control present.

Controls off: the label checks (1) need no control and always run. Without the random-net
control a handle cannot be called ``localized``: its verdict is None (not judged), unless
the depth check or the permutation control that did run finds against it. A check whose
control is off is skipped and the reason says so. Pure functions; no forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from core.calibrate import IIA
from core.label_permutation import PermutationControl

Verdict = Literal["localized", "not_identifiable", "no_better_than_control", "output_copy"]

MIN_CHANGED_SHARE = 0.02  # below this share of calibration pairs: "almost never" changes
IDENTICAL_AGREEMENT = 0.99  # same counterfactual label on this share: identical variables
RANDOM_NET_MARGIN = 0.1  # the real handle must beat the random net's by this much
OUTPUT_COPY_MARGIN = 0.02  # ... and the last location's full-vector interchange by this


@dataclass(frozen=True)
class BankEvidence:
    """What the calibration bank's labels say of one variable.

    Attributes:
        changed_share: share of calibration pairs where its interchange changes the output.
        changed_pairs, pairs: the count behind that share.
        identical_to: the other variables whose counterfactual labels match its own on at
            least ``IDENTICAL_AGREEMENT`` of the pairs where either changes the output,
            with that agreement.
    """

    changed_share: float
    changed_pairs: int
    pairs: int
    identical_to: dict[str, float]


@dataclass(frozen=True)
class ControlEvidence:
    """The controls of one handle; each None when that control did not run.

    Attributes:
        random_net: test IIA of the random net's handle for the variable.
        permutation: the kept-site mass of the handle's level against permuted labels.
        last_location: (location, test IIA) of the full-vector interchange at the net's last
            location (the depth check's last point).
    """

    random_net: IIA | None
    permutation: PermutationControl | None
    last_location: tuple[str, float] | None


@dataclass(frozen=True)
class Judgement:
    """A handle's verdict (None: not judged) and its reason in words."""

    verdict: Verdict | None
    reason: str


def bank_evidence(variables: Sequence[str], counterfactual: Mapping[str, Tensor],
                  base_labels: Tensor, scored: Mapping[str, Tensor] | None = None
                  ) -> dict[str, BankEvidence]:
    """Per variable, its change share and the variables observationally identical to it.

    Args:
        counterfactual: variable -> (P, O) counterfactual labels of the calibration bank.
        base_labels: (P, O) the bank's base labels.
        scored: variable -> (P,) bool, the pairs that score it (a bank with a scope): its
            change share is over those. None: every pair.
    """
    changed = {v: (counterfactual[v] != base_labels).any(-1) for v in variables}
    out = {}
    for v in variables:
        identical = {}
        for other in variables:
            if other == v:
                continue
            moved = changed[v] | changed[other]
            if not bool(moved.any()):
                continue  # neither ever moves: the change-share check speaks for both
            same = (counterfactual[v] == counterfactual[other]).all(-1)[moved]
            agreement = float(same.double().mean())
            if agreement >= IDENTICAL_AGREEMENT:
                identical[other] = agreement
        mine = changed[v] if scored is None else changed[v][scored[v]]
        count, pairs = int(mine.sum()), int(mine.numel())
        out[v] = BankEvidence(count / pairs if pairs else 0.0, count, pairs, identical)
    return out


def judge(variable: str, iia: IIA, bank: BankEvidence, controls: ControlEvidence
          ) -> Judgement:
    """The verdict of one handle with test IIA ``iia`` (the module docstring's rule)."""
    if bank.changed_share < MIN_CHANGED_SHARE:
        return Judgement("not_identifiable", (
            f"{variable}'s interchange changes the output on {bank.changed_pairs} of "
            f"{bank.pairs} calibration pairs (under {MIN_CHANGED_SHARE:.0%}): no intervention "
            f"can show where it lives; the IIA {iia.overall:.3f} is mostly pairs where "
            "leaving the output alone is right"))
    if bank.identical_to:
        names = ", ".join(f"{other} ({agreement:.1%} of the pairs where either changes the "
                          "output)" for other, agreement in bank.identical_to.items())
        return Judgement("not_identifiable", (
            f"{variable} is observationally identical to {names}: the same counterfactual "
            "labels, so no interchange judged by the output can tell them apart"))
    skipped = []
    last = controls.last_location
    if last is None:
        skipped.append("the depth check")
    elif last[1] >= iia.overall - OUTPUT_COPY_MARGIN:
        return Judgement("output_copy", (
            f"the plain full-vector interchange at {last[0]} (the last location: the source's "
            f"state goes straight to the output) reaches {last[1]:.3f} test IIA, as much as "
            f"the handle's {iia.overall:.3f}: it localizes nothing but the output"))
    random_net = controls.random_net
    if random_net is not None:
        gaps = {"overall": (iia.overall, random_net.overall)}
        if iia.sensitivity is not None and random_net.sensitivity is not None:
            gaps["on the pairs where the output must change"] = (iia.sensitivity,
                                                                 random_net.sensitivity)
        for where, (real, control) in gaps.items():
            if real - control < RANDOM_NET_MARGIN:
                return Judgement("no_better_than_control", (
                    f"the random net's handle reaches {control:.3f} test IIA {where}, within "
                    f"{RANDOM_NET_MARGIN} of the real handle's {real:.3f}: the IIA does not "
                    "show that the net computes the variable"))
    mass = controls.permutation
    if mass is None:
        skipped.append("the label-permutation control")
    elif not mass.separated:
        return Judgement("no_better_than_control", (
            f"the coupling puts {mass.real_mass:.3f} of its row on the kept sites, not clearly "
            f"above couplings on permuted labels ({mass.control_mass:.3f}) or a uniform row "
            f"({mass.uniform_mass:.3f}): the coupling did not single these sites out"))
    off = f" ({' and '.join(skipped)} off)" if skipped else ""
    if random_net is None:
        return Judgement(None, "not judged: the random-net control was off, and without it "
                         f"no IIA shows that the net computes the variable{off}")
    sensitivity = ("" if iia.sensitivity is None
                   else f", {iia.sensitivity:.3f} where the output must change")
    return Judgement("localized", (
        f"{variable}'s interchange changes the output on {bank.changed_share:.1%} of the "
        f"calibration pairs, and the handle ({iia.overall:.3f} test IIA{sensitivity}) beats "
        f"the random net's ({random_net.overall:.3f}) by at least {RANDOM_NET_MARGIN}"
        + ("" if last is None else
           f" and the output copy at {last[0]} ({last[1]:.3f}) by {OUTPUT_COPY_MARGIN}")
        + ("" if mass is None else ", its coupling mass clears permuted labels")
        + off))
