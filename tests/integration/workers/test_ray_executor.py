"""A job on the local Ray's intervention actors gives what it gives in one process.

Tolerance: the same handle sites (exact), the same IIA (exact: they are counts of exact
matches), couplings and costs within 1e-6 (chunking changes the matmul batch shapes only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch

from core.errors import JobCancelled
from core.events import EngineEvent
from core.job import JobContext, run_job
from core.result import JobResult
from core.spec import JobSpec
from tests.integration.conftest import TINY_SPEC
from workers.cluster import make_pool
from workers.pool import ActorPool
from workers.runner import PoolExecutors

pytestmark = pytest.mark.slow

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
           spec: JobSpec = SPEC, **kwargs: object) -> JobResult:
    with PoolExecutors(pool, chunks_per_actor).for_job() as factory:
        return run_job(spec, context, executor_factory=factory, **kwargs)  # type: ignore[arg-type]


def test_calibration_screening_on_actors_gives_the_in_process_result(
        two_actors: ActorPool, context: JobContext) -> None:
    # enough candidates that successive halving screens on a prefix of the calibration bank
    screened = JobSpec.model_validate({**TINY_SPEC, "calibration": {
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

    result = run_on(two_actors, context, chunks_per_actor=4, on_event=kill_once)
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
        run_on(two_actors, context, chunks_per_actor=8, on_event=record,
               should_cancel=cancel_after_first_chunk)
    chunks_done = [e for e in seen if e.kind == "progress"]
    assert len(chunks_done) == 1  # nothing ran on after the cancel was seen
    held = ray.get([actor.jobs.remote() for actor in two_actors.actors])
    assert held == [[], []]
