"""One call from a notebook: a net object and a causal side in, the whole ``JobResult`` out.

    from core import localize
    result = localize(net, task, sites=["blocks.0", "blocks.1"], pairs={"fit": 256})
    result.handles["P"].sites, result.controls.random_net

``net`` is a built-in or Hugging Face net object, any ``nn.Module`` (wrapped by
``ModuleNet`` at the module paths ``sites``), or a ``ModuleNet``. The causal side is a
built-in task name, a counterfactual dataset file (JSONL), a ``PythonTask`` (a causal model
defined in Python with its input sampler and encoder), a ``PairBank`` or ``Banks``, or a
mapping of tensors ``{base, source, base_labels, counterfactual_labels}``. Spec knobs come as
keyword arguments (``levels=[...]``, ``pairs={...}``, ``controls={...}``) or as a ``spec``.
The job runs in this process exactly as ``plot run`` runs it: levels, controls, DAS and the
report (``render_report(result)``). Nothing here is reachable from the service, which never
imports user code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.causal.bank import Banks, PairBank
from core.causal.dataset import read_dataset, split_dataset
from core.causal.generated import GeneratedTask
from core.causal.model import CausalModel
from core.causal.registry import BUILTIN_TASKS, build_task, make_banks
from core.causal.task import CausalTask
from core.control import NO_CONTROL, JobControl
from core.engine import trace_bank
from core.errors import DatasetError, ModelLoadError
from core.export import ExportFormat, export_handle, hook_points, result_handle
from core.job import JobContext, run_prepared, task_for_net, trace_job
from core.nets.base import InterventableNet
from core.nets.module import ModuleNet, ModuleSite
from core.result import JobResult
from core.sites import parse_site
from core.spec import JobSpec, parse_job_spec


@dataclass
class PythonTask(GeneratedTask):
    """A causal model defined in Python, as a task the engine draws pair banks from.

    Attributes:
        causal: the causal model H.
        variables: the intermediate variables to localize.
        sampler: ``sampler(n, generator) -> {input name: (n,) tensor}``.
        encoder: ``encoder(inputs) -> (n, *input_shape)`` net inputs.
        name: recorded in the result's spec (``python:NAME``).
    """

    causal: CausalModel
    variables: tuple[str, ...]
    sampler: Callable[[int, torch.Generator], dict[str, Tensor]]
    encoder: Callable[[Mapping[str, Tensor]], Tensor]
    name: str = "python"
    params: dict[str, Any] = field(default_factory=dict)

    def sample_inputs(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return self.sampler(n, generator)

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        return self.encoder(inputs)


def _pair_bank(data: Mapping[str, Any]) -> PairBank:
    missing = [k for k in ("base", "source", "base_labels", "counterfactual_labels")
               if k not in data]
    if missing:
        raise DatasetError(f"the pair tensors lack {', '.join(missing)}", missing[0])
    labels = data["base_labels"]

    def as_heads(y: Tensor) -> Tensor:  # (P,) labels of one head -> (P, 1)
        return y.long().unsqueeze(-1) if y.dim() == 1 else y.long()

    return PairBank(data["base"], data["source"], as_heads(labels),
                    {v: as_heads(y) for v, y in data["counterfactual_labels"].items()})


def _task_field(causal: Any) -> dict[str, Any]:
    if isinstance(causal, str) and causal in BUILTIN_TASKS:
        return {"builtin": causal}
    if isinstance(causal, str | Path):
        return {"dataset": str(causal)}
    return {"dataset": f"python:{getattr(causal, 'name', type(causal).__name__)}"}


def _banks(causal: Any, spec: JobSpec, input_shape: Sequence[int] | None,
           net: InterventableNet | None) -> tuple[Banks, CausalTask | None]:
    """The job's banks from whatever the causal side is, and the built-in task if any."""
    if isinstance(causal, Banks):
        return causal, None
    if isinstance(causal, PairBank):
        return split_dataset(causal, spec.pairs), None
    if isinstance(causal, Mapping):
        return split_dataset(_pair_bank(causal), spec.pairs), None
    if isinstance(causal, str) and causal in BUILTIN_TASKS:
        task: CausalTask | None = build_task(causal, spec.task.params)
        if net is not None:  # MCQA on a Hugging Face model: its CopyColors prompts
            task = task_for_net(task, net)
        assert task is not None
        return make_banks(task, spec.pairs), task
    if isinstance(causal, str | Path):
        path = Path(causal)
        shape = net.input_shape if net is not None else input_shape
        if shape is None:
            raise DatasetError("reading a dataset for a plain module needs input_shape",
                               str(path))
        bank = read_dataset(path, input_shape=tuple(shape),
                            output_shape=net.output_shape if net is not None else None,
                            input_dtype=net.input_dtype if net is not None else torch.float32,
                            tokenize=net.text_encoder() if net is not None else None,
                            label_names=net.label_names() if net is not None else (),
                            name=str(path))
        return split_dataset(bank, spec.pairs), None
    if hasattr(causal, "sample_bank"):  # a PythonTask: seeded like a built-in task's banks
        return make_banks(causal, spec.pairs), None
    raise DatasetError(f"cannot use a {type(causal).__name__} as the causal side (a task "
                       "name, a dataset file, a PythonTask, a PairBank or pair tensors)", "causal")


def as_net(net: nn.Module, sites: Sequence[str | ModuleSite] | None,
           input_shape: Sequence[int] | None, token_axis: int | None = None) -> InterventableNet:
    """``net`` itself when it is an ``InterventableNet``, else a ``ModuleNet`` at ``sites``."""
    if isinstance(net, InterventableNet):
        if sites is not None:
            raise ModelLoadError(f"{type(net).__name__} has its own sites; give sites only "
                                 "with a plain nn.Module", "sites")
        return net
    if not sites:
        raise ModelLoadError("a plain nn.Module needs sites: the module paths to localize in",
                             "sites")
    if input_shape is None:
        raise ModelLoadError("a plain nn.Module needs input_shape", "input_shape")
    return ModuleNet(net, sites, input_shape, token_axis=token_axis)  # in eval mode


def net_and_banks(net: nn.Module, causal: Any, spec: JobSpec,
                  sites: Sequence[str | ModuleSite] | None = None,
                  input_shape: Sequence[int] | None = None, token_axis: int | None = None
                  ) -> tuple[InterventableNet, Banks, CausalTask | None]:
    """The job's net (wrapped when a plain module), its banks and its built-in task if any:
    the same for ``localize`` and for re-deriving a result's banks (``export``)."""
    ready = net if isinstance(net, InterventableNet) else None
    banks, task = _banks(causal, spec, input_shape, ready)
    model = as_net(net, sites, input_shape or tuple(banks.fit.base.shape[1:]), token_axis)
    return model, banks, task


def export(result: JobResult, variable: str, directory: str | Path, *, net: nn.Module,
           causal: Any, sites: Sequence[str | ModuleSite] | None = None,
           input_shape: Sequence[int] | None = None, token_axis: int | None = None,
           format: ExportFormat = "torch") -> Path:
    """Write ``variable``'s handle for use outside this project (``core.export``): a torch
    hook file, and with ``format="pyvene"`` a pyvene intervention. ``net`` and ``causal`` are
    what ``localize`` was given (a PCA handle's frame is recomputed from the fit bank).

    Raises:
        PlotError: no handle for ``variable``, or sites that are not module outputs.
    """
    handle = result_handle(result.handles, variable)
    spec = parse_job_spec(result.spec, "result.spec")
    model, banks, _ = net_and_banks(net, causal, spec, sites, input_shape, token_axis)
    hook_points(model)  # a net whose sites are not module outputs is refused before tracing
    pca = [parse_site(site, model.widths).location for site in handle.sites if "/pca:" in site]
    fit = trace_bank(model, banks.fit, spec.max_rows or 65536, pca) if pca else None
    return export_handle(handle, model, fit, directory, format)


def localize(net: nn.Module, causal: Any, *, sites: Sequence[str | ModuleSite] | None = None,
             input_shape: Sequence[int] | None = None, token_axis: int | None = None,
             spec: JobSpec | Mapping[str, Any] | None = None,
             control: JobControl = NO_CONTROL, **knobs: Any) -> JobResult:
    """Run a whole PLOT job on a net held in memory (see the module docstring).

    Args:
        net: an ``InterventableNet`` (built-in, HF, ``ModuleNet``) or a plain ``nn.Module``.
        causal: a built-in task name, a dataset path, a ``PythonTask`` (or any object with
            ``sample_bank``), a ``PairBank``, ``Banks`` or a mapping of pair tensors.
        sites: module paths (or ``ModuleSite``s) when ``net`` is a plain module.
        input_shape: one input's shape for a plain module (else read from the pairs).
        token_axis: the sequence axis of every plain-string site's output.
        spec: a ``JobSpec`` or its mapping (its ``task`` may be omitted).
        knobs: top-level spec fields, e.g. ``levels=[{"granularity": "neuron"}]``,
            ``pairs={"fit": 256}``, ``controls={"random_net": True}``, ``seed=1``.

    Raises:
        PlotError: a subclass naming the bad field, site path or tensor.
    """
    started = time.perf_counter()
    base = spec.model_dump(mode="json") if isinstance(spec, JobSpec) else dict(spec or {})
    base.setdefault("task", _task_field(causal))
    job_spec = parse_job_spec({**base, **knobs}, "localize")
    model, banks, task = net_and_banks(net, causal, job_spec, sites, input_shape, token_axis)
    device = next(model.parameters()).device
    context = JobContext(Path.cwd(), Path.cwd(), Path.home() / ".cache" / "plot", str(device))
    job = trace_job(job_spec, context, control, None, model, banks, task, None,
                    time.perf_counter() - started)
    return run_prepared(job_spec, context, job, control, started=started)
