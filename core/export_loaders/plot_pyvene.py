"""Apply an exported PLOT handle through pyvene (0.1.8): one intervention per edit.

    intervenable = intervenable_model(model, "handle_dir")
    logits = run(intervenable, base_inputs, source_inputs)

Each edit is a ``PlotHandleIntervention``: ``h + F diag(a) F^T (h_source - h)`` on the
edit's position of the module output pyvene hands it (unit ``t``: the whole tensor). A frame
``F`` is a (D, K) orthonormal basis, the tensor a ``LowRankRotatedSpaceIntervention`` holds;
a coordinate edit keeps indices and coefficients.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyvene  # type: ignore[import-untyped]
import torch
from plot_handle import apply_edit, load_handle  # type: ignore[import-not-found]


class PlotHandleIntervention(pyvene.Intervention,  # type: ignore[misc]
                             pyvene.DistributedRepresentationIntervention):  # type: ignore[misc]
    """One edit of a PLOT handle as a pyvene intervention."""

    def __init__(self, edit: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        super().__init__(keep_last_dim=True)  # the module's own output shape, not (B, S*D)
        self.edit = edit
        for key, value in weights.items():
            if key.startswith(edit["name"] + "."):
                self.register_buffer(key.replace(".", "_"), value)
        self.weights = {k: v for k, v in weights.items() if k.startswith(edit["name"] + ".")}

    def forward(self, base: torch.Tensor, source: torch.Tensor, subspaces: Any = None,
                **kwargs: Any) -> torch.Tensor:
        edited: torch.Tensor = apply_edit(base, source, self.edit, self.weights)
        return edited


class _Wrapped(torch.nn.Module):
    """What pyvene reads of a model beyond ``forward``: ``device`` and ``config``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = SimpleNamespace()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, inputs: torch.Tensor) -> Any:
        return self.model(inputs)


def intervenable_model(model: torch.nn.Module, directory: str | Path) -> Any:
    """A ``pyvene.IntervenableModel`` applying the handle in ``directory`` to ``model``."""
    spec, weights = load_handle(directory)
    representations = [pyvene.RepresentationConfig(
        layer=edit["pyvene"]["layer"], component=edit["pyvene"]["component"],
        unit=edit["pyvene"]["unit"], max_number_of_units=1,
        intervention=PlotHandleIntervention(edit, weights)) for edit in spec["edits"]]
    config = pyvene.IntervenableConfig(representations=representations)
    return pyvene.IntervenableModel(config, _Wrapped(model))


@torch.no_grad()
def run(intervenable: Any, base: torch.Tensor, source: torch.Tensor) -> Any:
    """The intervened output of ``model(base)`` with every edit reading ``model(source)``."""
    count = len(intervenable.representations)
    _, output = intervenable({"inputs": base}, [{"inputs": source}] * count)
    return output
