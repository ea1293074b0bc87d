"""Forward hooks as data: read or replace a module's output (or first input) in a ``with``.

``hooked`` installs the given hooks and removes exactly the handles it added, in
``finally``, so a failing forward never leaves a hook on the caller's net. It never looks
at or clears hooks that someone else installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

# main tensor -> replacement, or None to leave it (a reader)
HookFn = Callable[[Tensor], Tensor | None]


@dataclass(frozen=True)
class Hook:
    """One hook: ``fn`` sees the module's main output (``output``) or its first input
    (``input``: positional argument 0 or the ``hidden_states`` keyword).

    For a module that returns a tuple, the main output is its first element.
    """

    module: nn.Module
    fn: HookFn
    on: Literal["output", "input"] = "output"


def _output_hook(fn: HookFn) -> Callable[..., Any]:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        main = output[0] if isinstance(output, tuple) else output
        new = fn(main)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new
    return hook


def _input_hook(fn: HookFn) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"])
        return None if new is None else (args, {**kwargs, "hidden_states": new})
    return hook


@contextmanager
def hooked(hooks: Sequence[Hook]) -> Iterator[None]:
    """Install ``hooks`` (in order) for the body of the ``with``; remove only them after.

    Example:
        >>> seen = []
        >>> layer = nn.Linear(2, 2)
        >>> with hooked([Hook(layer, lambda out: seen.append(out.shape) or None)]):
        ...     _ = layer(torch.zeros(1, 2))
        >>> seen, len(layer._forward_hooks)
        ([torch.Size([1, 2])], 0)
    """
    handles: list[RemovableHandle] = []
    try:
        for item in hooks:
            if item.on == "output":
                handles.append(item.module.register_forward_hook(_output_hook(item.fn)))
            else:
                handles.append(item.module.register_forward_pre_hook(
                    _input_hook(item.fn), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def replayed(modules: Sequence[nn.Module], outputs: Sequence[Tensor]) -> Iterator[None]:
    """Inside the ``with``, calling ``modules[i]`` returns ``outputs[i]`` without computing.

    Hooks on a replayed module still run around the recorded output. Each module's own
    ``forward`` attribute (e.g. one a device-placement wrapper set) is put back after, even
    when the body raises.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> with replayed([layer], [torch.ones(1, 2)]):
        ...     replay = layer(torch.zeros(1, 2))
        >>> replay.tolist(), "forward" in vars(layer)
        ([[1.0, 1.0]], False)
    """
    saved = [vars(module).get("forward") for module in modules]
    try:
        for module, output in zip(modules, outputs, strict=True):
            module.forward = lambda *args, _out=output, **kwargs: _out
        yield
    finally:
        for module, forward in zip(modules, saved, strict=True):
            if forward is None:
                vars(module).pop("forward", None)
            else:
                module.forward = forward
