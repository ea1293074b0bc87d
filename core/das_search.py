"""Full DAS and PLOT-guided DAS (plot-method.md §6): which (location, k, variable) to train,
training them on the job's compute backend (one training: ``core.das_training``), and
choosing each variable's best subspace on the calibration bank.

*Full DAS* trains at every location × every k in ``dims`` (clipped to the width) × every
variable. *Guided DAS* trains only at the locations of the top ``r`` sites PLOT kept for a
variable at its last level (``kept_by_variable``, r = that level's ``keep``), with k
narrowed by that level's handle:

    S = total size (coordinates, PCA directions, or the width for a whole location) of the
        variable's last-level handle sites at that location; where the handle has none
        (a kept site it does not use), the spread of the variable's coupling row over the
        location's sites: its perplexity exp(H) times their mean size (``mass_support``);
    ks = the ranks of ``dims`` at the two ends of [S, 2S], each capped at D − 1 (a rank-D
        interchange is the whole location's): the smallest rank ≥ S and the smallest
        rank ≥ 2S (the largest rank < D when none is);
    when the support is a whole location (a coarse last level), every k in dims ≤ D.

Why [S, 2S]: a calibrated handle is a sparse, truncated picture of the variable (top-k sites
by transport mass), so the variable's subspace is at least as large as the handle and rarely
more than twice it. On the HEQ MLPs of bench/compare.py (3 seeds × 2 variables) full DAS's
best k fell in [S, 2S] six times out of six, and in (S/2, S] twice. A kept site the handle
does not use says where, not how big: on the HEQ paper banks (10 seeds) the handles are one
layer-1 neuron at λ 6-48 while DAS finds the variables at layer 0 with k 4-14, where the
kept layer-0 neuron gave S = 1 and the coupling's perplexity there 5-9.

Restart (``restart_best``, on by default): each variable's best run, when it started from
the handle's axes, is trained once more from a random start at the same (location, k) and
the better on calibration kept: on HEQ balanced seed 1 the handle start scored 0.960 where a
random one scores 0.980 at the same layer-0 rank.

Widening (``widened_targets``): when a variable's best guided calibration IIA trails its
handle's by more than ``widen_margin`` (or is under ``widen_below``), or its handle's own
calibration IIA is under ``widen_weak_handle``, it is also trained at
every other location (a token net: every block at its kept positions) with its ranks and
the next one.

With ``init: handle`` (the default) a guided run starts from the handle's own directions:
at a PCA level its principal directions, at a block or neuron level its coordinate axes
(the handle's directions first, strongest first, then the rest in order). ``init: pca``
does this at a PCA level only. Every other run (a location the handle does not use, a
widened one), and every restart after the first, starts from a random rotation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from core.backend import ProgressFn
from core.das_training import DasTarget, DasTraining
from core.errors import SpecError
from core.level_inputs import LevelInputs
from core.level_sites import pca_frames
from core.nets.base import InterventableNet
from core.result import DasResult, DasRun, LevelResult
from core.sites import Site, is_token_net, parse_site, parse_token_location, token_sites
from core.spec import DasSpec


def clip_dims(dims: Sequence[int], width: int) -> tuple[int, ...]:
    """The ranks of ``dims`` that fit in ``width``, ascending (``width`` if none fits).

    Example:
        >>> clip_dims([1, 2, 4, 8], 6), clip_dims([4, 8], 3)
        ((1, 2, 4), (3,))
    """
    return tuple(sorted({k for k in dims if k <= width})) or (width,)


def bracket_dims(dims: Sequence[int], support: int, width: int) -> tuple[int, ...]:
    """The ranks of ``dims`` at the two ends of [support, 2 * support], below ``width``.

    Each end is rounded up to the grid (the smallest rank at or above it); an end above
    every rank that fits becomes the largest rank that fits. Ranks stop at ``width - 1``:
    a rank-D interchange swaps the whole vector whatever the rotation, which is the plain
    location interchange PLOT's coarse level already scored, not a subspace.

    Example:
        >>> bracket_dims(range(1, 17), 6, 16), bracket_dims([1, 2, 4, 8, 16], 3, 16)
        ((6, 12), (4, 8))
        >>> bracket_dims([1, 2, 4, 8, 16], 6, 10), bracket_dims(range(1, 17), 16, 16)
        ((8,), (15,))
    """
    limit = max(width - 1, 1)
    fitting = clip_dims(dims, limit)

    def round_up(rank: int) -> int:
        return min((k for k in fitting if k >= rank), default=fitting[-1])

    return tuple(sorted({round_up(min(support, limit)), round_up(min(2 * support, limit))}))


def full_targets(net: InterventableNet, variables: Sequence[str], dims: Sequence[int]
                 ) -> list[DasTarget]:
    """Every location × variable, with ``dims`` clipped to the location's width.

    A token net's coarse locations are its token × layer grid of residual streams
    (``resid:i/pos:p``); its heads and sublayer outputs are not searched.
    """
    widths = net.widths
    if is_token_net(widths):
        widths = {s.location: s.size for s in token_sites(widths, ["resid"])}
    return [DasTarget(v, loc, clip_dims(dims, width))
            for loc, width in widths.items() for v in variables]


def guided_targets(level: LevelResult, net: InterventableNet, dims: Sequence[int],
                   frames: dict[str, Tensor] | None = None) -> list[DasTarget]:
    """The locations of the sites each variable kept at ``level`` (its last PLOT level).

    Args:
        level: the finest level PLOT ran; ``kept_by_variable`` holds each variable's top r
            sites, strongest first.
        frames: location -> (D, K) PCA frame of a PCA level, to start runs from the
            handle's principal directions; None for random starts.
    """
    widths = net.widths
    parsed = [parse_site(s, widths) for s in level.sites]
    out: list[DasTarget] = []
    for row, variable in enumerate(level.variables):
        kept = [parse_site(s, widths) for s in level.kept_by_variable[variable]]
        handle = [parse_site(s, widths) for s in level.handles[variable].sites]
        for location in dict.fromkeys(site.location for site in kept):
            width = widths[location]
            support = [s for s in handle if s.location == location]
            if not support and not any(s.kind == "all" for s in kept if s.location == location):
                # a kept site the handle does not use says where, not how big
                size = mass_support(level.coupling[row], parsed, location, width)
                out.append(DasTarget(variable, location, bracket_dims(dims, size, width)))
                continue
            support = support or [s for s in kept if s.location == location]
            # distinct coordinates: nested PCA prefixes and multi-resolution groups overlap
            size = min(len({c for s in support for c in range(s.start, s.stop)}), width)
            # a whole-location support (a coarse last level) says nothing about k
            whole = any(s.kind == "all" for s in support)
            ks = clip_dims(dims, width) if whole else bracket_dims(dims, size, width)
            init = (handle_frame(frames[location], support)
                    if frames is not None and location in frames and not whole else None)
            out.append(DasTarget(variable, location, ks, init))
    return out


def mass_support(row: Sequence[float], sites: Sequence[Site], location: str, width: int
                 ) -> int:
    """How many coordinates a variable's transport mass spreads over at ``location``: the
    perplexity exp(H) of its coupling row over the location's sites, times their mean size,
    rounded up.

    Example:
        >>> sites = [parse_site(f"layer:0/dims:{i}") for i in range(4)]
        >>> mass_support([0.25, 0.25, 0.25, 0.25], sites, "layer:0", 4)
        4
        >>> mass_support([1.0, 0.0, 0.0, 0.0], sites, "layer:0", 4)
        1
    """
    here = [(float(m), s.stop - s.start) for m, s in zip(row, sites, strict=True)
            if s.location == location]
    total = sum(m for m, _ in here)
    if total <= 0:
        return 1
    entropy = -sum(m / total * math.log(m / total) for m, _ in here if m > 0)
    mean_size = sum(size for _, size in here) / len(here)
    return max(1, min(width, math.ceil(math.exp(entropy) * mean_size - 1e-6)))


def handle_frame(frame: Tensor, support: Sequence[Site]) -> Tensor:
    """(D, K) the frame's columns reordered: the support's directions first, then the rest.

    ``frame`` is a PCA frame for PCA supports, the identity (coordinate axes) for
    coordinate supports; a support's ``start:stop`` indexes its columns either way.
    """
    first = [c for s in support if s.kind in ("pca", "dims") for c in range(s.start, s.stop)]
    chosen = list(dict.fromkeys(first))
    rest = [c for c in range(frame.shape[1]) if c not in set(chosen)]
    return frame[:, chosen + rest]


def handle_frames(spec: DasSpec, inputs: LevelInputs, last: LevelResult
                  ) -> dict[str, Tensor] | None:
    """The frames guided runs start from (see the module docstring), or None (random); at a
    PCA level, the frames that level read its sites in."""
    locations = [parse_site(s, inputs.net.widths).location for s in last.kept]
    if spec.init == "random" or (spec.init == "pca" and last.granularity != "pca"):
        return None
    if last.granularity == "pca":
        return pca_frames(inputs, locations)
    device = inputs.traces["fit"].base.logits.device
    return {loc: torch.eye(inputs.net.widths[loc], device=device)
            for loc in dict.fromkeys(locations)}


def widen_reason(best_calibration: float, handle_calibration: float, spec: DasSpec,
                 whole: bool = False) -> str | None:
    """Why a variable's guided search should widen, or None.

    It widens when its best guided calibration IIA is under ``spec.widen_below``, or trails
    the calibration IIA of the PLOT handle that pointed there by more than
    ``spec.widen_margin`` (the handle shows the variable can be steered that well, so a
    subspace interchange that falls well short of it is at the wrong location), or when
    that handle's own calibration IIA is under ``spec.widen_weak_handle`` (PLOT's picture
    of the variable is too weak to trust its locations alone: HEQ balanced seed 4, YZ's
    handle at 0.882 kept two layer-1 neurons, DAS finds YZ at layer 0). A ``whole``
    handle (whole locations, a coarse last level) is not judged weak: swapping a whole
    location moves every variable it holds, so its calibration IIA says nothing about where.
    """
    if spec.widen_below is not None and best_calibration < spec.widen_below:
        return f"best guided calibration IIA {best_calibration:.3f} < {spec.widen_below}"
    if spec.widen_margin is not None and best_calibration < handle_calibration - spec.widen_margin:
        return (f"best guided calibration IIA {best_calibration:.3f} trails the handle's "
                f"{handle_calibration:.3f} by more than {spec.widen_margin}")
    if (spec.widen_weak_handle is not None and not whole
            and handle_calibration < spec.widen_weak_handle):
        return (f"the handle's calibration IIA {handle_calibration:.3f} < "
                f"{spec.widen_weak_handle}: a weak guide")
    return None


def widened_variables(result: DasResult, level: LevelResult, spec: DasSpec,
                      widths: dict[str, int]) -> dict[str, str]:
    """Variable -> ``widen_reason``, for the variables whose guided search widens."""
    reasons = {v: widen_reason(best.iia_calibration, level.handles[v].iia_calibration, spec,
                               all(parse_site(s, widths).kind == "all"
                                   for s in level.handles[v].sites))
               for v, best in result.best.items()}
    return {v: reason for v, reason in reasons.items() if reason is not None}


def widen_locations(net: InterventableNet, kept: Sequence[str]) -> dict[str, int]:
    """Where a widened search may train, with widths: every location of an MLP or a GRU;
    on a token net, the residual stream of every block at the kept sites' positions."""
    widths = net.widths
    if not is_token_net(widths):
        return dict(widths)
    positions = {p.position for s in kept
                 if (p := parse_token_location(parse_site(s, widths).location)) is not None}
    return {s.location: s.size for s in token_sites(widths, ["resid"], positions=positions)}


def widened_targets(widened: dict[str, str], targets: Sequence[DasTarget], level: LevelResult,
                    net: InterventableNet, spec: DasSpec) -> list[DasTarget]:
    """For each variable in ``widened`` (``widened_variables``): every location it was not
    trained at (``widen_locations``), from a random start, with the ranks it was trained at plus the
    next rank of ``spec.dims`` above them (each clipped under the location's width).

    A transport handle can steer a variable at a location where no subspace interchange
    realises it. On the HEQ paper banks (seeds 0-3) the soft neuron handles sit at layer 1
    with calibration IIA 0.997-1.0, while every DAS rank there reaches only 0.75-0.91 and
    layer 0 reaches 0.99-1.0; the gap between the two is what flags it.
    """
    out = []
    for variable in widened:
        mine = [t for t in targets if t.variable == variable]
        tried = {t.location for t in mine}
        ranks = sorted({k for t in mine for k in t.dims})
        ranks += [k for k in sorted(spec.dims) if k > ranks[-1]][:1]
        for location, width in widen_locations(net, level.kept_by_variable[variable]).items():
            if location not in tried:
                out.append(DasTarget(variable, location, clip_dims(ranks, max(width - 1, 1))))
    return out


def restart_targets(result: DasResult) -> list[DasTarget]:
    """Each variable's best run, when it started from the handle's axes, once more from a
    random start (``restart_best``): a start from the handle's axes is one draw, and on the
    HEQ nets it sometimes lands under a random start at the same (location, k)."""
    return [DasTarget(v, parse_site(run.site).location, (run.dim,))
            for v, run in result.best.items() if run.init == "handle"]


def after(progress: ProgressFn | None, done: int) -> ProgressFn | None:
    """``progress`` for a later batch of trainings: counts continue from ``done``."""
    if progress is None:
        return None
    report = progress
    return lambda count, total: report(done + count, done + total)


def merged(result: DasResult, more: DasResult, locations: list[str],
           widened: dict[str, str]) -> DasResult:
    """Two DAS results as one: every run, each variable's best of all, summed counts."""
    runs = [*result.runs, *more.runs]
    return DasResult(mode=result.mode, runs=runs, best=select_runs(runs, locations),
                     trainings=result.trainings + more.trainings,
                     forward_passes=result.forward_passes + more.forward_passes,
                     runtime_s=0.0, widened=widened)


def select_runs(runs: Sequence[DasRun], locations: Sequence[str]) -> dict[str, DasRun]:
    """Per variable: the best calibration IIA, then the smaller k, then the earlier location."""
    def key(run: DasRun) -> tuple[float, int, int]:
        return (-run.iia_calibration, run.dim, list(locations).index(parse_site(run.site).location))

    best: dict[str, DasRun] = {}
    for run in sorted(runs, key=key):
        best.setdefault(run.variable, run)
    return best


def run_das_targets(mode: str, targets: Sequence[DasTarget], inputs: LevelInputs,
                    spec: DasSpec, seed: int = 0, progress: ProgressFn | None = None,
                    checkpoint: Callable[[], None] | None = None) -> DasResult:
    """Train every (target, k) on the job's backend, choose each variable's best run on the
    calibration bank.

    Args:
        progress: called with (trainings done, trainings total) after each (target, k).
        checkpoint: called before each training batch (it raises ``JobCancelled``).
    """
    started = time.perf_counter()
    total = sum(len(t.dims) for t in targets) * spec.restarts
    trainings = [DasTraining(target, k) for target in targets for k in target.dims]
    if progress is not None:
        progress(0, total)

    def done(count: int) -> None:
        if progress is not None:
            progress(count * spec.restarts, total)

    trained = inputs.backend.train_das(trainings, inputs, spec, seed, done, checkpoint)
    runs = [run for run, _ in trained]
    passes = sum(spent for _, spent in trained)
    return DasResult(mode=mode, runs=runs, best=select_runs(runs, list(inputs.net.widths)),
                     trainings=total, forward_passes=passes,
                     runtime_s=time.perf_counter() - started)


def run_das(spec: DasSpec, inputs: LevelInputs, levels: Sequence[LevelResult], seed: int = 0,
            progress: ProgressFn | None = None, checkpoint: Callable[[], None] | None = None
            ) -> DasResult:
    """Full or PLOT-guided DAS, as ``spec.mode`` says.

    Args:
        levels: the PLOT levels of the job (guided DAS reads the last one).

    Raises:
        SpecError: mode ``off``, or ``guided`` without a PLOT level.
    """
    started = time.perf_counter()
    if spec.mode == "full":
        targets = full_targets(inputs.net, inputs.variables, spec.dims)
    elif spec.mode == "guided":
        if not levels:
            raise SpecError("guided DAS needs at least one PLOT level", "das.mode")
        last = levels[-1]
        frames = handle_frames(spec, inputs, last)
        targets = guided_targets(last, inputs.net, spec.dims, frames)
    else:
        raise SpecError("DAS is off", "das.mode")
    result = run_das_targets(spec.mode, targets, inputs, spec, seed, progress, checkpoint)
    if spec.mode == "guided":  # no trigger set: widened_variables finds none
        widened = widened_variables(result, levels[-1], spec, inputs.net.widths)
        wider = widened_targets(widened, targets, levels[-1], inputs.net, spec)
        if wider:
            more = run_das_targets(spec.mode, wider, inputs, spec, seed,
                                   after(progress, result.trainings), checkpoint)
            result = merged(result, more, list(inputs.net.widths), widened)
    if spec.mode == "guided" and spec.restart_best:
        again = restart_targets(result)
        if again:
            more = run_das_targets(spec.mode, again, inputs, spec, seed,
                                   after(progress, result.trainings), checkpoint)
            result = merged(result, more, list(inputs.net.widths), result.widened)
    # the runtime counts the PCA frames too
    return result.model_copy(update={"runtime_s": time.perf_counter() - started})
