"""``--module pkg.mod:factory``: a user's net built by their own code, for the CLI only.

The service never imports user code (a job names a model directory or a registered id);
only ``plot run --module`` and ``plot export --module`` on the user's own machine do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from core.errors import ModelLoadError
from core.nets.base import InterventableNet


def load_factory_net(reference: str) -> InterventableNet:
    """Call ``factory()`` of ``pkg.mod:factory`` (importable from the working directory)
    and return its net.

    Raises:
        ModelLoadError: ``where`` is ``--module``: a malformed reference, a module or
            factory not found, or a factory that returns no ``InterventableNet``
            (e.g. a ``core.ModuleNet`` wrapping the user's module at its site paths).
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ModelLoadError(f"expected pkg.module:factory, got {reference!r}", "--module")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ModelLoadError(f"cannot import {module_name!r}: {error}", "--module") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelLoadError(f"{module_name} has no callable {attribute!r}", "--module")
    net = factory()
    if not isinstance(net, InterventableNet):
        raise ModelLoadError(f"{reference}() returned {type(net).__name__}; return a net, "
                             "e.g. core.ModuleNet(model, ['blocks.0'], input_shape=(4,))",
                             "--module")
    return net
