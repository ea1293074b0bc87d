"""What every level of one job shares: the net, the banks, their clean traces, the knobs and
the compute backend that runs the level's batched work."""

from __future__ import annotations

from dataclasses import dataclass

from core.backend import ComputeBackend, LocalBackend
from core.causal.bank import Banks
from core.engine import BankTraces
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
    backend: ComputeBackend
    controls: ControlsSpec | None = None  # its label_permutation runs in each level; None: off

    @classmethod
    def local(cls, net: InterventableNet, banks: Banks, traces: dict[str, BankTraces],
              coupling: CouplingSpec, calibration: CalibrationSpec, max_rows: int,
              controls: ControlsSpec | None = None) -> LevelInputs:
        """Inputs whose backend is this process (``LocalBackend`` over ``net`` and ``traces``)."""
        return cls(net, banks, traces, coupling, calibration, max_rows,
                   LocalBackend(net, traces, max_rows), controls)

    @property
    def variables(self) -> tuple[str, ...]:
        return self.banks.variables

    @property
    def num_classes(self) -> int:
        return self.net.output_shape[1]
