"""Apply an exported PLOT handle to a model by module path. Needs torch and safetensors only.

    logits = run_with_handle(model, "handle_dir", base_inputs, source_inputs)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


def load_handle(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(handle.json, its tensors)."""
    where = Path(directory)
    spec = json.loads((where / "handle.json").read_text())
    return spec, load_file(str(where / "handle.safetensors"))


def rows(t: torch.Tensor, edit: dict[str, Any]) -> torch.Tensor:
    """The picked tensor as (B, T, D): positions on axis 1 (T = 1 without a token axis)."""
    moved = t if edit["token_axis"] is None else t.movedim(edit["token_axis"], 1)
    return moved.reshape(t.shape[0], 1 if edit["token_axis"] is None else moved.shape[1], -1)


def apply_edit(h: torch.Tensor, h_source: torch.Tensor, edit: dict[str, Any],
               weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """h + F diag(a) F^T (h_source - h) on the (B, T, D) rows at the edit's position."""
    out, pos, name = rows(h, edit).clone(), edit["position"] or 0, edit["name"]
    a, now, src = weights[f"{name}.coefficients"], out[:, pos], rows(h_source, edit)[:, pos]
    if f"{name}.indices" in weights:
        index = weights[f"{name}.indices"]
        now[:, index] = torch.lerp(now[:, index], src[:, index], a.to(now))
    else:
        frame = weights[f"{name}.frame"].to(now)
        now = now + (((src - now) @ frame) * a.to(now)) @ frame.T
    out[:, pos] = now
    shape = h.shape if edit["token_axis"] is None else h.movedim(edit["token_axis"], 1).shape
    back = out.reshape(shape)
    return back if edit["token_axis"] is None else back.movedim(1, edit["token_axis"])


def _pick(value: Any, edit: dict[str, Any]) -> torch.Tensor:
    if edit["on"] == "input":
        return value[0]  # type: ignore[no-any-return]
    if isinstance(value, tuple | list):
        return value[edit["pick"] or 0]  # type: ignore[no-any-return]
    return value[edit["pick"]] if edit["pick"] is not None else value  # type: ignore[no-any-return]


def _put(value: Any, edit: dict[str, Any], new: torch.Tensor) -> Any:
    if edit["on"] == "input":
        return (new, *value[1:])
    if isinstance(value, tuple | list):
        at = edit["pick"] or 0
        return type(value)([new if i == at else v for i, v in enumerate(value)])
    return {**value, edit["pick"]: new} if edit["pick"] is not None else new


@torch.no_grad()
def run_with_handle(model: torch.nn.Module, directory: str | Path, base: torch.Tensor,
                    source: torch.Tensor) -> Any:
    """``model(base)`` with the handle's edits using the activations of ``model(source)``."""
    spec, weights = load_handle(directory)
    seen: dict[str, torch.Tensor] = {}

    def hook(edit: dict[str, Any], record: bool) -> Any:
        def fn(module: torch.nn.Module, *args: Any) -> Any:
            value = args[-1] if edit["on"] == "output" else args[0]
            if record:
                seen[edit["name"]] = _pick(value, edit)
                return None
            new = apply_edit(_pick(value, edit), seen[edit["name"]], edit, weights)
            return _put(value, edit, new)
        return fn

    for record, inputs in ((True, source), (False, base)):
        handles = []
        for edit in spec["edits"]:
            module = model.get_submodule(edit["path"])
            register = (module.register_forward_hook if edit["on"] == "output"
                        else module.register_forward_pre_hook)
            handles.append(register(hook(edit, record)))
        try:
            output = model(inputs)
        finally:
            for handle in handles:
                handle.remove()
    return output
