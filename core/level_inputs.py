"""What every level of one job shares: the net, the banks, their clean traces and knobs."""

from __future__ import annotations

from dataclasses import dataclass

from core.causal.bank import Banks
from core.engine import BankTraces
from core.executors import InterventionExecutor, LocalExecutor
from core.nets.base import InterventableNet
from core.spec import CalibrationSpec, ControlsSpec, CouplingSpec


@dataclass(frozen=True)
class LevelInputs:
    """What every level of one job shares: the net, the banks and their clean traces."""

    net: InterventableNet
    banks: Banks
    traces: dict[str, BankTraces]  # "fit" | "calibration" | "test"
    coupling: CouplingSpec
    calibration: CalibrationSpec
    max_rows: int
    executor: InterventionExecutor | None = None  # None: this process (LocalExecutor)
    controls: ControlsSpec | None = None  # its label_permutation runs in each level; None: off

    @property
    def run(self) -> InterventionExecutor:
        """The executor of the batched interventions."""
        if self.executor is not None:
            return self.executor
        return LocalExecutor(self.net, self.traces, self.max_rows)

    @property
    def variables(self) -> tuple[str, ...]:
        return self.banks.variables

    @property
    def num_classes(self) -> int:
        return self.net.output_shape[1]
