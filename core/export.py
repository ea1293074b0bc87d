"""Handles out: a found handle as tensors applied by module path, outside this project.

A handle is, per location it touches, ``h <- h + F diag(a) Fᵀ (h_source - h)`` (see
``core.intervene``). ``handle_edits`` rebuilds those exactly as calibration applied them:
coordinate sites as ``indices`` and coefficients (``torch.lerp`` on those coordinates, the
engine's own formula), PCA sites as the location's whole (D, K) frame and K coefficients
(the frame is recomputed from the fit bank, as the level computed it).

``export_handle`` writes a directory:

- ``handle.json``: the variable, sites, test IIA, and per edit its module ``path``, hook side
  (``output``, or ``input`` for a built-in MLP's layer), output ``pick``, ``token_axis`` and
  ``position``; plus the pyvene representation of each edit.
- ``handle.safetensors``: ``e{i}.coefficients`` and ``e{i}.indices`` or ``e{i}.frame``.
- ``plot_handle.py``: a torch-only loader, ``run_with_handle(model, dir, base, source)``.
- ``plot_pyvene.py`` (format ``pyvene``): ``intervenable(model, dir)``, a
  ``pyvene.IntervenableModel`` applying the handle, and ``run(intervenable, base, source)``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file
from torch import Tensor

from core.calibrate import Candidate, candidate_interventions
from core.engine import BankTraces
from core.errors import SiteError
from core.nets.base import InterventableNet
from core.nets.mlp import MLP
from core.nets.module import ModuleNet
from core.pca import fit_frames
from core.result import HandleResult
from core.sites import parse_site

ExportFormat = Literal["torch", "pyvene"]
_LOADERS = Path(__file__).parent / "export_loaders"


@dataclass(frozen=True)
class HookPoint:
    """Where a location lives in the module tree: a path, the hook side, the picked output
    tensor (None: the output itself or a tuple's first), token axis and position."""

    path: str
    on: Literal["output", "input"]
    pick: int | str | None
    token_axis: int | None
    position: int | None


def hook_points(net: InterventableNet) -> dict[str, HookPoint]:
    """Location -> its hook point, for nets whose locations are module outputs.

    Raises:
        SiteError: a net kind whose sites are not module outputs (recurrent steps, token
            positions of the built-in transformer), or a site picked by a function.
    """
    if isinstance(net, MLP):  # layer:i is the input of linears[i + 1]
        return {loc: HookPoint(f"linears.{int(loc.split(':')[1]) + 1}", "input", None,
                               None, None) for loc in net.widths}
    if not isinstance(net, ModuleNet):
        raise SiteError(f"{type(net).__name__} sites are not module outputs; export takes a "
                        "module net (ModuleNet) or a built-in MLP", "net")
    out = {}
    for site in net.module_sites:
        if callable(site.pick):
            raise SiteError("a site picked by a function cannot be exported; pick by index "
                            "or key", site.path)
        for loc in net.locations_of(site):
            _, _, position = loc.partition("/pos:")
            out[loc] = HookPoint(site.path, "output", site.pick, site.token_axis,
                                 int(position) if position else None)
    return out


def handle_edits(handle: HandleResult, net: InterventableNet, fit: BankTraces | None
                 ) -> dict[str, dict[str, Tensor]]:
    """Location -> ``{"coefficients", "indices" | "frame"}`` of the handle's soft edit.

    Args:
        fit: the clean traces of the job's fit bank (PCA frames are computed from them);
            None when the handle has no PCA site.
    """
    widths = net.widths
    sites = [parse_site(s, widths) for s in handle.sites]
    pca = list(dict.fromkeys(s.location for s in sites if s.kind == "pca"))
    if pca and fit is None:
        raise SiteError("a PCA handle needs the fit bank's traces for its frames", pca[0])
    frames = fit_frames(fit, pca) if fit is not None else {}
    directions = {loc: int(frames[loc].shape[1]) if loc in frames else width
                  for loc, width in widths.items()}
    device = next(net.parameters()).device
    candidate = Candidate(0, handle.k, float(handle.strength), tuple(range(len(sites))),
                          tuple(float(w) for w in handle.weights))
    interventions = candidate_interventions([candidate], sites, directions, frames, device)
    out: dict[str, dict[str, Tensor]] = {}
    for loc, coefficients in interventions.coefficients.items():
        row = coefficients[0].detach().cpu()
        if loc in interventions.frames:
            out[loc] = {"coefficients": row.contiguous(),
                        "frame": interventions.frames[loc].detach().cpu().contiguous()}
        else:
            index = torch.nonzero(row).flatten()
            out[loc] = {"coefficients": row[index].contiguous(), "indices": index}
    return out


def _pyvene_component(point: HookPoint) -> str:
    return f"model.{point.path.removeprefix('model.')}.{point.on}"


def export_handle(handle: HandleResult, net: InterventableNet, fit: BankTraces | None,
                  directory: Path | str, fmt: ExportFormat = "torch") -> Path:
    """Write the handle's export directory (see the module docstring); returns it.

    Raises:
        SiteError: the net's sites are not module outputs.
    """
    points = hook_points(net)
    edits = handle_edits(handle, net, fit)
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    described: list[dict[str, Any]] = []
    for i, (loc, parts) in enumerate(edits.items()):
        point = points[loc]
        for key, value in parts.items():
            tensors[f"e{i}.{key}"] = value
        described.append({"name": f"e{i}", "location": loc, "path": point.path,
                          "on": point.on, "pick": point.pick, "token_axis": point.token_axis,
                          "position": point.position,
                          "pyvene": {"layer": 0, "component": _pyvene_component(point),
                                     "unit": "t"}})
    document = {"format": "plot-handle/1", "variable": handle.variable, "level": handle.level,
                "sites": handle.sites, "iia_test": handle.iia_test.overall,
                "edits": described}
    (target / "handle.json").write_text(json.dumps(document, indent=2))
    save_file(tensors, str(target / "handle.safetensors"))
    shutil.copyfile(_LOADERS / "plot_handle.py", target / "plot_handle.py")
    if fmt == "pyvene":
        shutil.copyfile(_LOADERS / "plot_pyvene.py", target / "plot_pyvene.py")
    return target


def result_handle(handles: Mapping[str, HandleResult], variable: str) -> HandleResult:
    """The handle of ``variable``.

    Raises:
        SiteError: no such variable (naming the ones there are).
    """
    if variable not in handles:
        raise SiteError(f"no handle for {variable!r} (the result has {', '.join(handles)})",
                        "variable")
    return handles[variable]
