"""The verdicts (``core.verdict``) written into a job's results: its handles and each level's.

Every handle of a variable is read against the same bank evidence and the job's controls:
the random net's handle for the variable, the label-permutation control of the handle's own
level, and the depth check's last point (computed from the job's handle for the variable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.causal.bank import PairBank
from core.progressive import best_handles
from core.result import ControlsResult, HandleResult, LevelResult
from core.verdict import BankEvidence, ControlEvidence, bank_evidence, judge


def calibration_evidence(bank: PairBank, variables: Sequence[str]) -> dict[str, BankEvidence]:
    """``core.verdict.bank_evidence`` of a calibration bank."""
    scored = None if bank.scope is None else {v: bank.scored(v) for v in variables}
    return bank_evidence(variables, bank.counterfactual_labels, bank.base_labels, scored)


def handle_controls(handle: HandleResult, levels: Sequence[LevelResult],
                    controls: ControlsResult | None) -> ControlEvidence:
    """The controls of one handle (each None when it did not run)."""
    if controls is None:
        return ControlEvidence(None, None, None)
    variable = handle.variable
    random_net = controls.random_net
    control = random_net.handles.get(variable) if random_net is not None else None
    level = levels[handle.level] if handle.level < len(levels) else None
    permutation = (level.label_permutation or {}).get(variable) if level is not None else None
    depth = controls.depth.get(variable)
    return ControlEvidence(control.iia_test if control is not None else None, permutation,
                           (depth[-1].location, depth[-1].iia_test) if depth else None)


def judged(handle: HandleResult, levels: Sequence[LevelResult],
           controls: ControlsResult | None, evidence: Mapping[str, BankEvidence]
           ) -> HandleResult:
    """``handle`` with its verdict and reason."""
    judgement = judge(handle.variable, handle.iia_test, evidence[handle.variable],
                      handle_controls(handle, levels, controls))
    return handle.model_copy(update={"verdict": judgement.verdict,
                                     "verdict_reason": judgement.reason})


def with_verdicts(levels: Sequence[LevelResult], controls: ControlsResult | None,
                  calibration: PairBank, variables: Sequence[str]
                  ) -> tuple[list[LevelResult], dict[str, HandleResult]]:
    """Every level's handles with its verdict, judged on the calibration bank's evidence
    and the controls, and the job's handles (``best_handles`` of the judged levels)."""
    evidence = calibration_evidence(calibration, variables)
    judged_levels = [level.model_copy(update={"handles": {
        v: judged(h, levels, controls, evidence) for v, h in level.handles.items()}})
        for level in levels]
    return judged_levels, best_handles(judged_levels)
