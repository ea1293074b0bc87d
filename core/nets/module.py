"""Any ``nn.Module`` as an ``InterventableNet``: sites at module paths, through forward hooks.

``ModuleNet(model, ["blocks.0", "blocks.1"], input_shape=(4,))`` gives the engine ``trace``
and ``resume`` without a hand-written forward pass. Location ``module:blocks.0`` is the
output of submodule ``blocks.0`` flattened to (B, D); with a token axis (a sequence
output), one location per position: ``module:conv/pos:3`` is the (B, D) slice at position 3.
Every support of the site grammar follows: ``module:blocks.0/dims:3-5``,
``module:conv/pos:3/pca:2``.

``resume`` reruns the whole forward on ``copies`` tiled copies of the inputs with
replacing hooks at the edited paths (correct for any module). It skips the prefix only
where that is provably safe: the model is an ``nn.Sequential`` and the first edited path is
one of its children, or the caller declared ``resume_from[path]`` (``fn(model, output) ->
model output``, the rest of the forward from that path's output). Both restart from the
path's traced output with the edits applied.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from core.errors import SiteError
from core.nets.base import Edit, InterventableNet, StoredShapes, Trace, tile

Picker = int | str | Callable[[Any], Tensor] | None
ResumeFrom = Callable[[nn.Module, Tensor], Any]


@dataclass(frozen=True)
class ModuleSite:
    """A module path whose output holds the activations of some locations.

    Attributes:
        path: the submodule's dotted path (``named_modules`` name), e.g. ``blocks.2.mlp``.
        pick: which tensor of the output: None (the output, or the first tensor of a tuple),
            an index into a tuple/list output, a key of a dict output, or a function
            ``fn(output) -> Tensor`` returning one of the output's tensors.
        token_axis: the sequence axis of the picked tensor (a location per position), or
            None (the whole tensor, flattened, is one location).
    """

    path: str
    pick: Picker = None
    token_axis: int | None = None


def _pick(output: Any, pick: Picker) -> Tensor | None:
    """The picked tensor of a module output, or None when it holds none."""
    found: Any
    if callable(pick):
        found = pick(output)
    elif pick is None:
        found = output[0] if isinstance(output, tuple | list) and output else output
    elif isinstance(output, tuple | list) and isinstance(pick, int):
        found = output[pick] if -len(output) <= pick < len(output) else None
    elif isinstance(output, Mapping) and isinstance(pick, str):
        found = output.get(pick)
    else:
        found = None
    return found if isinstance(found, Tensor) else None


def _replace(output: Any, old: Tensor, new: Tensor) -> Any:
    """``output`` with the tensor ``old`` (by identity) replaced by ``new``."""
    if output is old:
        return new
    if isinstance(output, tuple | list):
        items = [new if item is old else item for item in output]
        return type(output)(items) if isinstance(output, list) else tuple(items)
    if isinstance(output, dict):
        return {key: new if value is old else value for key, value in output.items()}
    raise SiteError("the picked tensor cannot be written back into the module's output",
                    "module")


def _logits(output: Any) -> Tensor:
    """The model output as (B, O, C) logits: (B, C) gains a head axis; ``.logits`` or a
    tuple's first element is read from a structured output."""
    found = getattr(output, "logits", None)
    if found is None:
        found = output[0] if isinstance(output, tuple | list) else output
    if not isinstance(found, Tensor):
        raise SiteError(f"the model returns {type(output).__name__}, not logits", "module")
    return found.unsqueeze(1) if found.dim() == 2 else found


def module_not_found(model: nn.Module, path: str, why: str) -> SiteError:
    """One line naming ``path`` and the nearest existing module names."""
    names = [name for name, _ in model.named_modules() if name]
    near = difflib.get_close_matches(path, names, n=3, cutoff=0.3) or names[:3]
    return SiteError(f"module path {path!r} {why}; nearest: {', '.join(near)}", path)


class ModuleNet(StoredShapes, InterventableNet):
    """A user's ``nn.Module`` with sites at module paths (see the module docstring).

    Args:
        model: the module; called as ``model(inputs)``, it returns (B, C) or (B, O, C)
            logits (or an output with ``.logits`` / logits first). It is put in eval mode.
        sites: module paths (strings) or ``ModuleSite``s, in any order.
        input_shape: one example's shape, without the batch axis.
        input_dtype: of the inputs (``torch.long`` for token ids).
        token_axis: the token axis of every site given as a plain string.
        resume_from: path -> ``fn(model, output)`` running the rest of the forward from
            that path's output; declares that skipping the prefix is safe there.

    Raises:
        SiteError: a path that does not exist or whose output holds no tensor (one line
            naming it and the nearest module names).
    """

    def __init__(self, model: nn.Module, sites: Sequence[str | ModuleSite],
                 input_shape: Sequence[int], input_dtype: torch.dtype = torch.float32,
                 token_axis: int | None = None,
                 resume_from: Mapping[str, ResumeFrom] | None = None) -> None:
        super().__init__()
        self.model = model
        self.eval()  # dropout off, batch norm on its running statistics (the model's too)
        self.module_sites = [s if isinstance(s, ModuleSite) else ModuleSite(s, None, token_axis)
                             for s in sites]
        self._input_shape = tuple(int(d) for d in input_shape)
        self._input_dtype = input_dtype
        self.resume_from = dict(resume_from or {})
        for site in self.module_sites:
            try:
                model.get_submodule(site.path)
            except AttributeError:
                raise module_not_found(model, site.path, "does not exist") from None
        device = next(iter(model.parameters()), torch.zeros(0)).device
        probe = torch.zeros(2, *self._input_shape, dtype=input_dtype, device=device)
        with torch.no_grad():
            outputs, logits = self._run(probe, {})
        self.shapes = {s.path: tuple(outputs[s.path].shape[1:]) for s in self.module_sites}
        self._output_shape = (int(logits.shape[1]), int(logits.shape[2]))
        self._widths = self._location_widths()
        self.config = {"arch": "module", "class": type(model).__name__,
                       "sites": [s.path for s in self.module_sites],
                       "input_shape": list(self._input_shape)}

    # ------------------------------------------------------------------ layout

    def _location_widths(self) -> dict[str, int]:
        order = {name: i for i, (name, _) in enumerate(self.model.named_modules())}
        widths: dict[str, int] = {}
        for site in sorted(self.module_sites, key=lambda s: order[s.path]):
            shape = self.shapes[site.path]
            if site.token_axis is None:
                widths[f"module:{site.path}"] = math.prod(shape)
                continue
            axis = site.token_axis - 1  # shapes drop the batch axis
            if not 0 <= axis < len(shape):
                raise SiteError(f"token_axis {site.token_axis} is outside the output of shape "
                                f"{list(shape)} (batch first)", site.path)
            width = math.prod(shape) // shape[axis]
            for position in range(shape[axis]):
                widths[f"module:{site.path}/pos:{position}"] = width
        return widths

    def _site(self, path: str) -> ModuleSite:
        return next(s for s in self.module_sites if s.path == path)

    def locations_of(self, site: ModuleSite) -> list[str]:
        """The location ids of one module site, in position order."""
        prefix = f"module:{site.path}"
        return [loc for loc in self._widths if loc == prefix or loc.startswith(prefix + "/")]

    def split(self, site: ModuleSite, tensor: Tensor) -> dict[str, Tensor]:
        """The picked (N, *shape) tensor as location -> (N, D) rows."""
        if site.token_axis is None:
            return {f"module:{site.path}": tensor.reshape(tensor.shape[0], -1)}
        moved = tensor.movedim(site.token_axis, 1)  # (N, T, ...)
        rows = moved.reshape(moved.shape[0], moved.shape[1], -1)
        return {f"module:{site.path}/pos:{t}": rows[:, t] for t in range(rows.shape[1])}

    def join(self, site: ModuleSite, rows: Mapping[str, Tensor]) -> Tensor:
        """Inverse of ``split``: location -> (N, D) rows back to the (N, *shape) tensor."""
        shape = self.shapes[site.path]
        if site.token_axis is None:
            only = rows[f"module:{site.path}"]
            return only.reshape(only.shape[0], *shape)
        stacked = torch.stack([rows[loc] for loc in self.locations_of(site)], dim=1)
        axis = site.token_axis - 1
        moved_shape = (shape[axis], *shape[:axis], *shape[axis + 1:])
        return stacked.reshape(stacked.shape[0], *moved_shape).movedim(1, site.token_axis)

    # ------------------------------------------------------------------ hooks

    @contextmanager
    def _hooks(self, edits: Mapping[str, Edit], seen: dict[str, Tensor]) -> Iterator[None]:
        """Record every site's picked output into ``seen``; apply ``edits`` at their paths."""
        handles: list[RemovableHandle] = []

        def make(site: ModuleSite) -> Callable[..., Any]:
            prefix = f"module:{site.path}"
            own = [loc for loc in edits if loc == prefix or loc.startswith(prefix + "/")]

            def hook(module: nn.Module, args: Any, output: Any) -> Any:
                picked = _pick(output, site.pick)
                if picked is None:
                    raise module_not_found(self.model, site.path,
                                           f"returns {type(output).__name__} holding no tensor")
                if not own:
                    seen[site.path] = picked
                    return None
                rows = self.split(site, picked)
                for loc in own:
                    rows[loc] = edits[loc](rows[loc])
                new = self.join(site, rows).to(picked.dtype)
                seen[site.path] = new
                return _replace(output, picked, new)
            return hook

        try:
            for site in self.module_sites:
                module = self.model.get_submodule(site.path)
                handles.append(module.register_forward_hook(make(site)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _run(self, inputs: Tensor, edits: Mapping[str, Edit]) -> tuple[dict[str, Tensor], Tensor]:
        seen: dict[str, Tensor] = {}
        with self._hooks(edits, seen):
            output = self.model(inputs)
        return seen, _logits(output)

    # ------------------------------------------------------------------ engine

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        """The logits and the activation at each location (those in ``locations``, or
        all)."""
        seen, logits = self._run(inputs, {})
        activations: dict[str, Tensor] = {}
        for site in self.module_sites:
            activations.update(self.split(site, seen[site.path]))
        if locations is not None:
            activations = {loc: act for loc, act in activations.items() if loc in locations}
        return Trace(inputs=inputs, activations=activations, logits=logits)

    def _resume_point(self, path: str) -> ResumeFrom | None:
        """How to run the rest of the forward from ``path``'s output, when provably safe."""
        if path in self.resume_from:
            return self.resume_from[path]
        site = self._site(path)
        if (isinstance(self.model, nn.Sequential) and site.pick is None
                and path in dict(self.model.named_children())):
            index = list(dict(self.model.named_children())).index(path)
            return lambda model, output: cast(nn.Sequential, model)[index + 1:](output)
        return None

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        start = list(self._widths)[self.first_edited(edits)]
        path = start.removeprefix("module:").split("/")[0]
        site = self._site(path)
        rest = self._resume_point(path) if site.pick is None else None
        if rest is None:  # recompute from the input: correct for any module
            _, logits = self._run(tile(trace.inputs, copies), edits)
            return logits
        rows = {loc: tile(trace.activations[loc], copies) for loc in self.locations_of(site)}
        for loc in rows:
            if loc in edits:
                rows[loc] = edits[loc](rows[loc])
        later = {loc: edit for loc, edit in edits.items() if loc not in rows}
        with self._hooks(later, {}):
            output = rest(self.model, self.join(site, rows))
        return _logits(output)
