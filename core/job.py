"""One job end to end: resolve the net and the pairs, trace the banks, run the levels.

This is the function ``plot run``, ``plot demo``, the service's in-process runner and the
Ray job runner all call; side effects are limited to reading the net / dataset it is
pointed at and, for a built-in task without a net, training and caching its default net.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from core.backend import ComputeBackend, LocalBackend
from core.causal.bank import Banks
from core.causal.dataset import check_dataset_scheme, read_dataset, split_dataset
from core.causal.registry import build_task, make_banks
from core.causal.task import CausalTask
from core.control import NO_CONTROL, JobControl
from core.controls import run_controls
from core.das_search import run_das
from core.engine import BankTraces, trace_bank
from core.errors import DatasetError, ModelLoadError
from core.handle_verdicts import with_verdicts
from core.level_inputs import LevelInputs
from core.memory import rows_for_budget
from core.nets.base import InterventableNet
from core.nets.io import load_net, net_digest, resolve_net_dir, save_net
from core.nets.registry import build_net
from core.nets.train import TrainConfig, TrainProgress, train_net
from core.nets.transformer import TransformerNet
from core.progressive import run_levels
from core.result import ControlsResult, DasResult, JobResult, LevelResult
from core.sites import is_token_net
from core.spec import JobSpec, LevelSpec
from core.token_levels import TOKEN_NET_LEVELS

TASK_FILE = "task.json"

class BackendFactory(Protocol):
    """Builds a job's compute backend elsewhere (the Ray pool): there the net is loaded and
    the banks traced; this process keeps the net's outline and the clean logits only."""

    def describe(self, net_dir: Path) -> InterventableNet:
        """The net's outline (``core.nets.outline.NetOutline``): no weights."""
        ...

    def __call__(self, net_dir: Path, banks: Banks, max_rows: int, budget: int | None
                 ) -> tuple[ComputeBackend, dict[str, BankTraces]]:
        """The backend holding the net and the banks, and the banks' clean traces without
        activations."""
        ...

# Bumped whenever what a default net is trained on changes without its config or params
# changing (a task's factual distribution, say), so a cached net of the old recipe is not reused.
DEFAULT_NET_RECIPE = 2

# Training of each built-in task's default net (the held-out sample is drawn like the pairs'
# sides). HEQ trains on uniform entity draws, as the reference does, for up to 10k steps of
# 1024 (the reference's 10 epochs of 1M), or until it is confident (held-out loss ≤ 1e-3):
# nets trained on balanced draws, or stopped at the first 99.5 %, compute WX and YZ in
# mixed, entangled directions (full-DAS test IIA ~0.84 against ~0.98). The 1e-3 is where it
# may stop early; a net that runs all 10k steps counts as trained at held-out accuracy 1.0
# and loss ≤ 0.1 (what the recipe reaches: 0.011-0.071 on seeds 0-9, one thread, every one
# at accuracy 1.0 after the full 10k steps). Every default net trains
# on one torch thread (TrainConfig.threads), so it is the same whatever the caller's.
TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "hierarchical_equality": TrainConfig(lr=3e-3, batch_size=1024, max_steps=10_000,
                                         target_accuracy=1.0, target_loss=1e-3,
                                         accept_loss=0.1),
    "binary_addition": TrainConfig(target_accuracy=1.0),
    "mcqa": TrainConfig(lr=3e-3, batch_size=128, max_steps=3000, target_accuracy=0.995,
                        target_loss=0.03, eval_size=1024, eval_every=100),
}


@dataclass(frozen=True)
class JobContext:
    """Where a job may read from and cache to (deployment config, not job config).

    Attributes:
        model_root: ``model.path`` resolves under it; nothing outside it is read.
        data_root: ``task.dataset`` resolves under it.
        cache_dir: default nets of built-in tasks are trained once and kept here.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when present).
    """

    model_root: Path
    data_root: Path
    cache_dir: Path
    device: str = "auto"
    memory_budget: int | None = None  # bytes a level's traces may hold (core.memory)

    def max_rows(self, requested: int | None) -> int:
        """Rows per stacked forward: the spec's, or sized to the device's memory."""
        if requested is not None:
            return requested
        device = self.torch_device()
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return int(max(65536, min(free // 4096, 4_194_304)))
        return 65536

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


def task_default_net(task: CausalTask, cache_dir: Path, seed: int = 0,
                     control: JobControl = NO_CONTROL) -> Path:
    """The directory of ``task``'s default net, training it into the cache on first use
    (``control`` is checked during training; nothing is cached for a cancelled one)."""
    config = task.default_net_config()
    key = json.dumps({"task": task.name, "params": task.params, "config": config, "seed": seed,
                      "train": repr(TRAIN_CONFIGS.get(task.name)),
                      "recipe": DEFAULT_NET_RECIPE}, sort_keys=True)
    directory = cache_dir / "nets" / f"{task.name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (directory / "model.safetensors").exists():
        return directory
    train_default_net(task, directory, seed, control)
    return directory


def train_default_net(task: CausalTask, directory: Path, seed: int = 0,
                      control: JobControl = NO_CONTROL) -> dict[str, Any]:
    """Train ``task``'s default net and save it with its task parameters and report.

    ``control`` receives a ``progress`` event of stage ``training`` at each held-out
    evaluation (step of max steps, held-out accuracy and loss) and its verdict at the end.

    Raises:
        JobCancelled: the job was cancelled (polled before each training batch);
            nothing is written.
    """

    config = TRAIN_CONFIGS.get(task.name, TrainConfig())

    def poll_cancel() -> None:
        control.check("cancelled while training the default net", "model")

    def report_progress(progress: TrainProgress) -> None:
        control.emit("progress", {"stage": "training", "done": progress.step,
                                  "total": config.max_steps, "accuracy": progress.accuracy,
                                  "held_out_loss": progress.held_out_loss})

    torch.manual_seed(seed)
    net = build_net(task.default_net_config())
    if isinstance(net, TransformerNet):  # its word tokenizer is saved with it
        net.tokenizer = getattr(task, "tokenizer", None)
    control.emit("progress", {"stage": "training", "done": 0, "total": config.max_steps})
    report = train_net(net, task.sample_examples, seed=seed, config=config,
                       progress=report_progress, held_out=task.sample_evaluation_examples,
                       checkpoint=poll_cancel)
    save_net(net, directory)
    record = {"builtin": task.name, "params": task.params, "seed": seed}
    (directory / TASK_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
    summary = {k: v for k, v in vars(report).items() if isinstance(v, int | float | str | bool)}
    # the targets it was held to, so a reader of train.json sees which one was missed
    summary.update(target_accuracy=config.target_accuracy, target_loss=config.target_loss,
                   accept_loss=config.accept_loss if config.accept_loss is not None
                   else config.target_loss, max_steps=config.max_steps,
                   threads=config.threads if config.threads is not None else "caller")
    (directory / "train.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    # done == total closes the stage even when the net stopped early at its target
    control.emit("progress", {"stage": "training", "done": report.steps, "total": report.steps,
                              "accuracy": report.accuracy, "held_out_loss": report.held_out_loss,
                              "reached_target": report.reached_target})
    return summary


def resolve_net(spec: JobSpec, context: JobContext, task: CausalTask | None,
                control: JobControl = NO_CONTROL) -> tuple[InterventableNet, Path]:
    """Load the net the spec names, or the built-in task's default net."""
    directory = resolve_net_directory(spec, context, task, control)
    return load_net(directory, device=context.torch_device()), directory


def resolve_net_directory(spec: JobSpec, context: JobContext, task: CausalTask | None,
                          control: JobControl = NO_CONTROL) -> Path:
    """The directory of the net the spec names, or of the built-in task's default net
    (trained into the cache on first use)."""
    if spec.model.id is not None:
        raise ModelLoadError("a registered model id is resolved by the service; give "
                             "model.path to plot run", "model.id")
    if spec.model.path is not None:
        directory = resolve_net_dir(spec.model.path, context.model_root)
    elif task is not None:
        directory = task_default_net(task, context.cache_dir, spec.seed, control)
        shortfall = training_shortfall(directory)
        if shortfall is not None:
            raise ModelLoadError(
                f"the default {task.name} net of seed {spec.seed} did not reach its training "
                f"target ({shortfall}), so its handles would depend on where training "
                f"stopped; pick another seed, or give its directory ({directory}) as "
                f"model.path to run on it anyway", "model")
    else:
        raise ModelLoadError("a dataset task needs a net: give model.path", "model.path")
    return directory


def training_shortfall(directory: Path) -> str | None:
    """How a net's recorded training (``train.json``) fell short of its target, in words;
    None when it reached it or no training was recorded."""
    try:
        record = json.loads((directory / "train.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("reached_target") is not False:
        return None
    loss = record.get("accept_loss", record.get("target_loss"))
    return (f"after {record.get('steps')} of {record.get('max_steps')} steps: held-out "
            f"accuracy {record.get('accuracy', float('nan')):.4f} (target "
            f"{record.get('target_accuracy')}), held-out loss "
            f"{record.get('held_out_loss', float('nan')):.4g} (target {loss})")


def net_warnings(directory: Path) -> list[str]:
    """Warnings about a net the job runs on: a recorded training that missed its target."""
    shortfall = training_shortfall(directory)
    return [] if shortfall is None else [
        f"this net's training did not reach its target ({shortfall}): handles may depend on "
        "where training stopped"]


def resolve_task(spec: JobSpec, context: JobContext) -> CausalTask | None:
    """The built-in task of the spec, with parameters recorded next to its net if any."""
    if spec.task.builtin is None:
        return None
    params: dict[str, Any] = {}
    if spec.model.path is not None:
        recorded = resolve_net_dir(spec.model.path, context.model_root) / TASK_FILE
        if recorded.exists():
            params = dict(json.loads(recorded.read_text()).get("params", {}))
    return build_task(spec.task.builtin, {**params, **spec.task.params})


def task_for_net(task: CausalTask | None, net: InterventableNet) -> CausalTask | None:
    """The task as ``net`` reads its inputs: a task with a ``for_net`` method adapts its
    prompts to the net (MCQA: CopyColors text for a Hugging Face model's tokenizer)."""
    adapt = getattr(task, "for_net", None)
    return task if adapt is None else adapt(net)


def dataset_path(spec: JobSpec, data_root: Path) -> Path:
    """The spec's dataset file, resolved under ``data_root``.

    Raises:
        DatasetError: the path leaves the root (``task.dataset``).
    """
    assert spec.task.dataset is not None
    path = (data_root / spec.task.dataset).resolve()
    if not path.is_relative_to(data_root.resolve()):
        raise DatasetError("the dataset path leaves the data root", "task.dataset")
    return path


def resolve_banks(spec: JobSpec, context: JobContext, task: CausalTask | None,
                  net: InterventableNet) -> Banks:
    """Generate the banks of a built-in task, or split the dataset's rows into them."""
    if task is not None:
        if tuple(task.input_shape) != tuple(net.input_shape):
            raise ModelLoadError(f"the net takes inputs of shape {list(net.input_shape)} but "
                                 f"{task.name} makes {list(task.input_shape)}", "model.path")
        if tuple(task.output_shape) != tuple(net.output_shape):
            raise ModelLoadError(f"the net has outputs {list(net.output_shape)} (heads, classes)"
                                 f" but {task.name} needs {list(task.output_shape)}",
                                 "model.path")
        return make_banks(task, spec.pairs)
    assert spec.task.dataset is not None  # TaskSpec validates exactly one of the two
    check_dataset_scheme(spec.pairs)  # before reading the file
    path = dataset_path(spec, context.data_root)
    bank = read_dataset(path, input_shape=net.input_shape, output_shape=net.output_shape,
                        input_dtype=net.input_dtype, tokenize=net.text_encoder(),
                        label_names=net.label_names(),
                        name=spec.task.dataset)  # errors name it as the spec does
    return split_dataset(bank, spec.pairs)


def default_levels(spec: JobSpec, task: CausalTask | None, net: InterventableNet
                   ) -> list[LevelSpec]:
    """The spec's levels, else the task's schedule, else one by the net's kind."""
    if spec.levels:
        return list(spec.levels)
    if task is not None:
        return [LevelSpec(**level) for level in task.default_levels()]
    first = next(iter(net.widths))
    if first.startswith("module:") and any("/pos:" in loc for loc in net.widths):
        return [LevelSpec(granularity="position", keep=2), LevelSpec(granularity="neuron")]
    if is_token_net(net.widths):
        return [LevelSpec(**level) for level in TOKEN_NET_LEVELS]
    if first.startswith("step"):
        return [LevelSpec(granularity="step", keep=1), LevelSpec(granularity="pca")]
    return [LevelSpec(granularity="block", block_size=8), LevelSpec(granularity="neuron")]


def run_job_das(spec: JobSpec, inputs: LevelInputs, levels: Sequence[LevelResult],
                control: JobControl) -> DasResult | None:
    """The DAS baseline of a job after its PLOT levels, or None when ``das.mode`` is off."""
    if spec.das.mode == "off":
        return None
    report = control.progress("das", {"mode": spec.das.mode}, "cancelled while training DAS",
                              "das")
    return run_das(spec.das, inputs, levels, spec.seed, report,
                   lambda: control.check("cancelled while training DAS", "das"))


def control_timing(controls: ControlsResult | None) -> dict[str, float]:
    """The job timing's control entries: their total and each control's seconds."""
    parts = dict(controls.timing) if controls is not None else {
        "random_net_s": 0.0, "label_permutation_s": 0.0, "depth_check_s": 0.0}
    return {"controls_s": sum(parts.values()), **parts}


def run_job_controls(schedule: Sequence[LevelSpec], inputs: LevelInputs,
                     levels: Sequence[LevelResult], control: JobControl,
                     budget: int | None = None) -> tuple[ControlsResult | None, int]:
    """The job-level controls (random net, depth check, the label permutation's summary),
    or None when every control is off; with the forward passes they ran. The random net's
    traces keep to ``budget`` (the job's memory budget) as the levels' do."""
    controls = inputs.controls
    if controls is None or not (controls.random_net or controls.label_permutation
                                or controls.depth_check):
        return None, 0
    return run_controls(controls, controls.seed or 0, schedule, inputs, levels, control,
                        budget)


@dataclass(frozen=True)
class PreparedJob:
    """A job ready for its levels: its task, net directory, traced banks and backend.

    Attributes:
        timing: seconds to resolve the net (``net_s``) and to build and trace the banks
            (``banks_s``).
    """

    task: CausalTask | None
    directory: Path | None  # None: a net handed in memory (core.notebook.localize)
    inputs: LevelInputs
    timing: dict[str, float]


def prepare_job(spec: JobSpec, context: JobContext, control: JobControl,
                backend_factory: BackendFactory | None) -> PreparedJob:
    """Resolve the task and net, build and trace the banks, build the compute backend; emit
    ``started``."""
    started = time.perf_counter()
    task = resolve_task(spec, context)
    if backend_factory is None:
        net, directory = resolve_net(spec, context, task, control)
    else:  # the actors hold the net; the random-net control copies its weights here
        directory = resolve_net_directory(spec, context, task, control)
        net = (load_net(directory, device=context.torch_device()) if spec.controls.random_net
               else backend_factory.describe(directory))
    task = task_for_net(task, net)
    t_net = time.perf_counter()
    banks = resolve_banks(spec, context, task, net)
    return trace_job(spec, context, control, backend_factory, net, banks, task, directory,
                     t_net - started)


def trace_job(spec: JobSpec, context: JobContext, control: JobControl,
              backend_factory: BackendFactory | None, net: InterventableNet, banks: Banks,
              task: CausalTask | None, directory: Path | None, net_s: float) -> PreparedJob:
    """Trace the banks of a resolved net (here, or on the actors when ``backend_factory``
    holds them) and build the backend; emit ``started``."""
    t_net = time.perf_counter()
    budget = context.memory_budget
    max_rows = context.max_rows(spec.max_rows)
    if spec.max_rows is None:  # a token net's row carries T positions of activations
        max_rows = rows_for_budget(net, budget, max(1, max_rows // net.tokens_per_row))
    backend: ComputeBackend
    if backend_factory is None:
        # a token net's levels trace what each needs (LocalBackend.scope); first the logits
        first: tuple[str, ...] | None = () if net.scoped_traces else None
        traces = {split: trace_bank(net, getattr(banks, split), max_rows, first)
                  for split in ("fit", "calibration", "test")}
        backend = LocalBackend(net, traces, max_rows, banks, budget)
    elif directory is None:
        raise ModelLoadError("a net held in memory runs in this process only", "model")
    else:
        backend, traces = backend_factory(directory, banks, max_rows, budget)
    t_banks = time.perf_counter()
    control.emit("started", {
        "variables": list(banks.variables),
        "pairs": {"fit": banks.fit.size, "calibration": banks.calibration.size,
                  "test": banks.test.size}})
    controls_seed = spec.controls.seed if spec.controls.seed is not None else spec.seed
    inputs = LevelInputs(net, banks, traces, spec.coupling, spec.calibration, max_rows,
                         backend, spec.controls.model_copy(update={"seed": controls_seed}))
    return PreparedJob(task, directory, inputs, {"net_s": net_s, "banks_s": t_banks - t_net})


def job_result(spec: JobSpec, context: JobContext, job: PreparedJob,
               levels: list[LevelResult], controls: tuple[ControlsResult | None, int],
               das: DasResult | None, total_s: float) -> JobResult:
    """The result of a job whose levels, controls (with their forward passes) and DAS ran."""
    inputs, banks = job.inputs, job.inputs.banks
    control_result, control_passes = controls
    timing = {
        "total_s": total_s,
        **job.timing,
        "trace_s": sum(level.timing.get("trace_s", 0.0) for level in levels),
        "signatures_s": sum(level.timing["signatures_s"] for level in levels),
        "coupling_s": sum(level.timing["coupling_s"] for level in levels),
        "calibration_s": sum(level.timing["calibration_s"] for level in levels),
        "das_s": das.runtime_s if das is not None else 0.0,
        **control_timing(control_result),
    }
    judged_levels, handles = with_verdicts(levels, control_result, banks.calibration,
                                           list(banks.variables))
    return JobResult(
        variables=list(banks.variables),
        levels=judged_levels,
        handles=handles,
        timing=timing,
        forward_passes=sum(level.forward_passes for level in levels)
        + 2 * (banks.fit.size + banks.calibration.size + banks.test.size)
        + (das.forward_passes if das is not None else 0) + control_passes,
        net=({"path": str(job.directory), "digest": net_digest(job.directory),
              "config": inputs.net.config, "warnings": net_warnings(job.directory)}
             if job.directory is not None
             else {"path": None, "digest": memory_digest(inputs.net),
                   "config": inputs.net.config, "warnings": []}),
        banks={split: {"pairs": getattr(banks, split).size,
                       "change_rates": getattr(banks, split).change_rates()}
               for split in ("fit", "calibration", "test")},
        spec=spec.model_dump(mode="json"),
        device=str(context.torch_device()),
        max_rows=inputs.max_rows,
        das=das,
        controls=control_result,
    )


def run_job(
    spec: JobSpec,
    context: JobContext,
    control: JobControl = NO_CONTROL,
    on_level: Callable[[LevelResult], None] | None = None,
    completed: Sequence[LevelResult] = (),
    backend_factory: BackendFactory | None = None,
) -> JobResult:
    """Run a whole PLOT job.

    Args:
        spec: the validated job spec.
        context: roots, cache and device.
        control: receives progress events; its cancel check is polled between batches
            (a cancelled job raises JobCancelled).
        on_level: called with each level's checkpoint as soon as it is done.
        completed: checkpoints of levels already done (a resumed job skips them).
        backend_factory: where the batched interventions, coupling solves and DAS trainings
            run; None: this process (``LocalBackend``).

    Raises:
        PlotError: a subclass naming the bad field, file, tensor or line.
    """
    started = time.perf_counter()
    job = prepare_job(spec, context, control, backend_factory)
    return run_prepared(spec, context, job, control, on_level, completed, started)


def memory_digest(net: InterventableNet) -> str:
    """sha256 (hex) over the names, shapes and bytes of a net's state held in memory."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(f"{name}:{list(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
                      .tobytes())
    return digest.hexdigest()


def run_prepared(spec: JobSpec, context: JobContext, job: PreparedJob,
                 control: JobControl = NO_CONTROL,
                 on_level: Callable[[LevelResult], None] | None = None,
                 completed: Sequence[LevelResult] = (),
                 started: float | None = None) -> JobResult:
    """The levels, controls and DAS of a prepared job, and its result (``run_job``'s rest).

    Args:
        started: ``perf_counter`` when the job began (None: now).
    """
    started = time.perf_counter() if started is None else started
    inputs = job.inputs
    schedule = default_levels(spec, job.task, inputs.net)
    levels = run_levels(schedule, inputs, control, completed, on_level)
    if spec.das.mode != "off":
        inputs.backend.scope(None)  # DAS reads locations beyond the last level's
    # (the depth check traces the test bank for the locations it needs that are not held)
    controls = run_job_controls(schedule, inputs, levels, control, context.memory_budget)
    das = run_job_das(spec, inputs, levels, control)
    # the last stages may not have polled the cancel check
    control.check("cancelled before the result was returned", "job")
    result = job_result(spec, context, job, levels, controls, das,
                        time.perf_counter() - started)
    control.emit("finished", {
        "total_s": result.timing["total_s"],
        "handles": {v: {"sites": h.sites, "iia_test": h.iia_test.overall,
                        "verdict": h.verdict} for v, h in result.handles.items()}})
    return result
