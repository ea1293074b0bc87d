"""A job on the local Ray's intervention actors and CPU tasks gives what it gives in one
process.

Tolerance: the same handle sites (exact), the same IIA (exact: they are counts of exact
matches), couplings and costs within 1e-6 (chunking changes the matmul batch shapes only;
coupling plans solved in a CPU task are the same function on the same CPU inputs). DAS on
the actors: the same runs — site, k, variable, epochs, calibration and test IIA exact, final
loss within 1e-5 relative (the actor's torch may use another thread count) — and the same
best run per variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import torch

from core.control import NO_CONTROL, JobControl
from core.errors import JobCancelled
from core.events import EngineEvent
from core.job import JobContext, run_job
from core.plan_grid import grid_problem, solve_grid
from core.result import DasResult, JobResult
from core.spec import CalibrationSpec, CouplingSpec, JobSpec
from tests.integration.conftest import TINY_SPEC
from workers.actor_backends import ActorBackends
from workers.cluster import make_pool
from workers.coupling_task import solve_grid_on_ray
from workers.intervention_actor import CONTROL_GROUP
from workers.pool import ActorPool

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("heq_net")]  # HEQ jobs, net trained once

SPEC = JobSpec.model_validate(TINY_SPEC)


@pytest.fixture(scope="module")
def context(engine_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> JobContext:
    root = tmp_path_factory.mktemp("roots")
    return JobContext(model_root=root, data_root=root, cache_dir=engine_cache, device="cpu")


@pytest.fixture(scope="module")
def in_process(context: JobContext) -> JobResult:
    return run_job(SPEC, context)


@pytest.fixture(scope="module")
def two_actors(ray_local: None) -> Iterator[ActorPool]:
    pool = make_pool(actors=2)
    yield pool
    for actor in pool.actors:
        ray.kill(actor)


def assert_same_result(got: JobResult, want: JobResult) -> None:
    assert got.handles.keys() == want.handles.keys()
    for variable, handle in want.handles.items():
        assert got.handles[variable].sites == handle.sites
        assert got.handles[variable].iia_test == handle.iia_test
        assert got.handles[variable].iia_calibration == handle.iia_calibration
        assert got.handles[variable].hard_iia_test == handle.hard_iia_test
    for mine, theirs in zip(got.levels, want.levels, strict=True):
        assert mine.sites == theirs.sites and mine.kept == theirs.kept
        torch.testing.assert_close(torch.tensor(mine.coupling), torch.tensor(theirs.coupling),
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.tensor(mine.cost), torch.tensor(theirs.cost),
                                   rtol=0, atol=1e-6)
    # the controls: the depth check runs on the actors, the random net in the job's process
    assert got.controls is not None and want.controls is not None
    assert got.controls.depth == want.controls.depth
    assert got.controls.random_net is not None and want.controls.random_net is not None
    for variable, handle in want.controls.random_net.handles.items():
        assert got.controls.random_net.handles[variable].sites == handle.sites
        assert got.controls.random_net.handles[variable].iia_test == handle.iia_test
    for variable, mass in want.controls.label_permutation.items():
        assert got.controls.label_permutation[variable].kept == mass.kept
        assert abs(got.controls.label_permutation[variable].control_mass
                   - mass.control_mass) < 1e-6


def run_on(pool: ActorPool, context: JobContext, chunks_per_actor: int = 2,
           spec: JobSpec = SPEC, coupling_tasks: int | None = None,
           control: JobControl = NO_CONTROL) -> JobResult:
    backends = ActorBackends(pool, chunks_per_actor, coupling_tasks)
    with backends.for_job(control.should_cancel) as factory:
        return run_job(spec, context, control, backend_factory=factory)


def test_a_coupling_grid_solved_as_cpu_tasks_equals_the_in_process_grid(
        ray_local: None) -> None:
    generator = torch.Generator().manual_seed(0)
    signatures = torch.rand(7, 30, 4, generator=generator)
    cost = torch.rand(3, 7, generator=generator, dtype=torch.float64)
    coupling = CouplingSpec(solver="unbalanced", epsilons=[0.03, 0.1, 0.3], betas=[0.5, 5.0])
    problem = grid_problem(cost, signatures, coupling, CalibrationSpec(), variables=2)
    here = solve_grid(problem)
    there = solve_grid_on_ray(problem, tasks=4)  # 6 knobs in slices of 2, 2, 1, 1
    assert len(there) == len(here) == 6
    for mine, theirs in zip(there, here, strict=True):
        torch.testing.assert_close(mine.coupling.plan, theirs.coupling.plan, rtol=0, atol=1e-12)
        assert (mine.coupling.epsilon, mine.coupling.beta) == (theirs.coupling.epsilon,
                                                              theirs.coupling.beta)
        assert mine.candidates == theirs.candidates


def test_a_job_whose_couplings_run_as_cpu_tasks_gives_the_in_process_result(
        two_actors: ActorPool, context: JobContext) -> None:
    grid = JobSpec.model_validate({**TINY_SPEC, "coupling": {
        "solver": "unbalanced", "epsilons": [0.03, 0.1], "betas": [0.5, 5.0]}})
    assert ActorBackends(two_actors).coupling_tasks > 0  # the cluster has CPUs to spare
    assert_same_result(run_on(two_actors, context, spec=grid, coupling_tasks=3),
                       run_job(grid, context))


@pytest.mark.parametrize("pairs", [
    TINY_SPEC["pairs"],
    # each variable screened and scored on its own pairs: an index of the bank, not a prefix
    {"scheme": "paper", "calibration_scope": "per_variable", "fit": 200, "calibration": 200,
     "test": 50},
], ids=["shared", "per_variable"])
def test_calibration_screening_on_actors_gives_the_in_process_result(
        two_actors: ActorPool, context: JobContext, pairs: dict[str, Any]) -> None:
    # enough candidates that successive halving screens on a prefix of the calibration bank
    screened = JobSpec.model_validate({**TINY_SPEC, "pairs": pairs, "calibration": {
        "top_k": [1, 2, 4, 8], "strengths": [0.5, 1.0, 2.0, 4.0], "screen_pairs": 50,
        "finalists": 3}})
    assert_same_result(run_on(two_actors, context, spec=screened), run_job(screened, context))


def test_one_actor_gives_the_in_process_result(ray_local: None, context: JobContext,
                                               in_process: JobResult) -> None:
    pool = make_pool(actors=1)
    try:
        assert_same_result(run_on(pool, context), in_process)
    finally:
        ray.kill(pool.actors[0])


def test_work_split_across_two_actors_gives_the_in_process_result(
        two_actors: ActorPool, context: JobContext, in_process: JobResult) -> None:
    result = run_on(two_actors, context, chunks_per_actor=3)
    assert_same_result(result, in_process)
    held = ray.get([actor.jobs.remote() for actor in two_actors.actors])
    assert held == [[], []]  # every actor dropped the job's banks when it ended


def test_a_killed_actor_mid_level_costs_a_rerun_not_the_job(
        two_actors: ActorPool, context: JobContext, in_process: JobResult) -> None:
    replaced_before = two_actors.replaced
    victim = two_actors.actors[0]
    killed: list[str] = []

    def kill_once(event: EngineEvent) -> None:
        if event.kind == "progress" and event.data.get("stage") == "signatures" and not killed:
            ray.kill(victim)  # its in-flight and queued chunks fail with RayActorError
            killed.append(str(event.data))

    result = run_on(two_actors, context, chunks_per_actor=4, control=JobControl(kill_once))
    assert killed, "the level never reported signature progress"
    assert two_actors.replaced == replaced_before + 1
    assert victim not in two_actors.actors
    assert_same_result(result, in_process)


def test_cancel_stops_the_ray_work_and_releases_the_job(
        two_actors: ActorPool, context: JobContext) -> None:
    seen: list[EngineEvent] = []

    def record(event: EngineEvent) -> None:
        seen.append(event)

    def cancel_after_first_chunk() -> bool:
        return any(e.kind == "progress" and e.data.get("stage") == "signatures" for e in seen)

    with pytest.raises(JobCancelled):
        run_on(two_actors, context, chunks_per_actor=8,
               control=JobControl(record, cancel_after_first_chunk))
    chunks_done = [e for e in seen if e.kind == "progress" and "level" in e.data]
    assert len(chunks_done) == 1  # nothing ran on after the cancel was seen
    held = ray.get([actor.jobs.remote() for actor in two_actors.actors])
    assert held == [[], []]


def assert_same_das(got: DasResult | None, want: DasResult | None) -> None:
    assert got is not None and want is not None
    assert len(got.runs) == len(want.runs) == got.trainings
    for mine, theirs in zip(got.runs, want.runs, strict=True):
        assert (mine.site, mine.dim, mine.variable, mine.epochs, mine.init) == (
            theirs.site, theirs.dim, theirs.variable, theirs.epochs, theirs.init)
        assert mine.iia_calibration == theirs.iia_calibration
        assert mine.iia_test == theirs.iia_test
        assert mine.loss == pytest.approx(theirs.loss, rel=1e-5)
    assert {v: r.site for v, r in got.best.items()} == {v: r.site for v, r in want.best.items()}
    assert got.forward_passes == want.forward_passes


def test_das_trainings_spread_over_the_actors_give_the_in_process_runs(
        two_actors: ActorPool, context: JobContext) -> None:
    das = JobSpec.model_validate({**TINY_SPEC, "das": {
        "mode": "full", "dims": [1, 2], "max_epochs": 4, "min_epochs": 1, "batch_size": 64}})
    seen: list[dict[str, Any]] = []

    def record(event: EngineEvent) -> None:
        if event.kind == "das":
            seen.append(event.data)

    before = ray.get([a.stats.options(concurrency_group=CONTROL_GROUP).remote()
                      for a in two_actors.actors])
    on_ray = run_on(two_actors, context, spec=das, control=JobControl(record))
    after = ray.get([a.stats.options(concurrency_group=CONTROL_GROUP).remote()
                     for a in two_actors.actors])
    in_process = run_job(das, context)
    assert_same_das(on_ray.das, in_process.das)
    assert on_ray.das is not None and on_ray.das.trainings == 3 * 2 * 2  # layers × k × vars
    assert [e["done"] for e in seen] == list(range(13))  # one event per finished training
    trained = [a["das_trainings"] - b["das_trainings"] for a, b in zip(after, before,
                                                                       strict=True)]
    assert sum(trained) == 12 and min(trained) >= 1  # spread over both actors


def test_cancel_interrupts_a_chunk_running_on_an_actor(ray_local: None,
                                                       context: JobContext) -> None:
    # one actor, one chunk per call: the neuron level's signatures are a single chunk of
    # 48 sites × 1000 pairs in micro-batches of 10 rows (4,800 micro-batches)
    long_chunk = JobSpec.model_validate({**TINY_SPEC, "max_rows": 10,
                                         "pairs": {"fit": 1000, "calibration": 50,
                                                   "test": 50}})
    chunk_batches = 48 * 1000 // 10
    pool = make_pool(actors=1)
    actor = pool.actors[0]

    def stats() -> dict[str, Any]:
        return dict(ray.get(actor.stats.options(concurrency_group=CONTROL_GROUP).remote()))

    try:
        start = stats()["micro_batches"]
        asked: list[int] = []

        def cancel_once_the_chunk_runs() -> bool:
            if not asked and stats()["micro_batches"] >= start + 5:
                asked.append(stats()["micro_batches"])
            return bool(asked)

        with pytest.raises(JobCancelled):
            run_on(pool, context, chunks_per_actor=1, spec=long_chunk, coupling_tasks=0,
                   control=JobControl(should_cancel=cancel_once_the_chunk_runs))
        # a default-group call runs after the chunk ends: the actor released the job
        assert ray.get(actor.jobs.remote()) == []
        end = stats()
        assert asked, "the chunk never started"
        [(flagged_at, stopped_at)] = end["interruptions"]
        assert stopped_at - flagged_at <= 1  # at most the micro-batch under way finished
        assert flagged_at >= asked[0]
        assert end["micro_batches"] - start < chunk_batches  # the chunk did not run out
    finally:
        ray.kill(actor)
