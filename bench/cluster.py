"""Throughput of the scheduler for many small jobs: jobs/minute, and the share of each job's
wall time (claim to terminal state) spent outside the engine (``result.timing.total_s``).

    python bench/cluster.py --jobs 60 --owners 3 --slots 2            # local Ray, 2 actors
    python bench/cluster.py --jobs 60 --owners 3 --slots 2 --no-ray   # interventions in-process
    python bench/cluster.py --epsilons 0.01 0.03 0.1 0.3   # 4-plan grids: CPU tasks on Ray
    python bench/cluster.py --epsilons 0.01 0.03 0.1 0.3 --coupling-tasks 0   # ... in the runner

Runs on a throwaway Postgres database (127.0.0.1:5432, user postgres) with the real
claim loop, JobRunner and engine. Prints a table and writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.db import jobs
from api.db.job_store import SqlJobStore
from api.db.leader_lock import LeaderLock
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import Job
from api.metrics import ServiceMetrics
from core.job import JobContext, run_job
from core.spec import JobSpec
from workers.claim_loop import ClaimLimits, ClaimLoop
from workers.engine import Engine
from workers.events import InProcessBus
from workers.job_status import TERMINAL
from workers.runner import JobRunner, RunnerConfig

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SMALL_SPEC = {
    "task": {"builtin": "hierarchical_equality"},
    "pairs": {"fit": 200, "calibration": 200, "test": 200},
    "levels": [{"granularity": "layer"}],
    "coupling": {"epsilons": [0.03]},
    "calibration": {"top_k": [1, 2], "strengths": [1.0, 2.0]},
    # what this bench weighs is the service around the engine, so the engine work of a job
    # stays that of one level: the controls (on by default) would rerun it on a random net
    "controls": {"random_net": False, "label_permutation": False, "depth_check": False},
}


def small_spec(epsilons: list[float]) -> JobSpec:
    """SMALL_SPEC with a coupling grid of one plan per ε."""
    return JobSpec.model_validate({**SMALL_SPEC, "coupling": {"epsilons": epsilons}})


def coupling_where(args: argparse.Namespace, pool: Any) -> str:
    """Where the Ray runs solve their coupling grids (see RayBackend.solve_grid)."""
    tasks = pool.coupling_tasks if pool is not None else 0
    return "in runner" if tasks == 0 or len(args.epsilons) < 2 else f"{tasks} tasks"


def admin(sql: str) -> None:
    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(sql))
    engine.dispose()


def run(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    name = f"plot_bench_{uuid.uuid4().hex[:8]}"
    admin(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    upgrade_database(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    root = Path(tempfile.mkdtemp())
    pool = None
    if not args.no_ray:
        from workers import cluster
        from workers.actor_backends import ActorBackends

        cluster.connect(cluster.LOCAL, num_cpus=args.ray_cpus)
        pool = ActorBackends(cluster.make_pool(args.actors),
                             coupling_tasks=args.coupling_tasks)
    executor = Engine(root, root, cache, "cpu", pool)
    spec = small_spec(args.epsilons)
    per_owner = args.jobs // args.owners
    with sessions() as session:
        ids = [jobs.create_job(session, f"owner{o}", spec, max_queued=per_owner).id
               for o in range(args.owners) for _ in range(per_owner)]
    store = SqlJobStore(sessions)
    runner = JobRunner(store, InProcessBus(), executor, RunnerConfig(60, 3), ServiceMetrics())
    scheduler = ClaimLoop(store, runner, ClaimLimits(args.slots, args.per_owner_cap, 0.02),
                          LeaderLock(engine))
    started = time.perf_counter()
    scheduler.start()
    try:
        while True:
            with sessions() as session:
                left = session.query(Job).filter(Job.status.not_in(TERMINAL)).count()
            if left == 0:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - started
    finally:
        scheduler.stop()
        executor.close()
    with sessions() as session:
        rows = [session.get(Job, i) for i in ids]
        job_wall = [(j.finished_at - j.started_at).total_seconds() for j in rows]
        engine_s = [j.result["timing"]["total_s"] for j in rows if j.result]
        statuses = sorted({j.status for j in rows})
    engine.dispose()
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    outside = 1 - sum(engine_s) / sum(job_wall)
    return {
        "mode": "in-process" if args.no_ray else
        f"ray ({args.actors or 2} actors, coupling {coupling_where(args, pool)})",
        "jobs": len(ids), "owners": args.owners, "slots": args.slots,
        "epsilons": args.epsilons,
        "statuses": statuses, "wall_s": wall, "jobs_per_min": 60 * len(ids) / wall,
        "job_wall_median_s": statistics.median(job_wall),
        "engine_median_s": statistics.median(engine_s),
        "share_outside_engine": outside,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--owners", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--per-owner-cap", type=int, default=1)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.03],
                        help="the coupling grid (one plan per ε; a grid of one plan is "
                        "solved in the runner even on Ray)")
    parser.add_argument("--coupling-tasks", type=int, default=None,
                        help="CPU tasks per coupling grid on Ray (0: in the runner; default: "
                        "4 when the cluster has CPUs beyond the actors')")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "plot-cache")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # train the default net once outside the timed run
    run_job(small_spec(args.epsilons), JobContext(args.cache, args.cache, args.cache, "cpu"))
    figures = run(args, args.cache)
    print(f"{'mode':<36}{'plans':>6}{'jobs':>6}{'slots':>7}{'wall s':>9}{'jobs/min':>10}"
          f"{'job med s':>11}{'engine med s':>14}{'outside':>9}")
    print(f"{figures['mode']:<36}{len(args.epsilons):>6}{figures['jobs']:>6}{figures['slots']:>7}"
          f"{figures['wall_s']:>9.1f}{figures['jobs_per_min']:>10.1f}"
          f"{figures['job_wall_median_s']:>11.3f}{figures['engine_median_s']:>14.3f}"
          f"{figures['share_outside_engine']:>9.1%}")
    out = args.out or (Path(__file__).parent / "results" /
                       f"cluster-{'local' if args.no_ray else 'ray'}"
                       f"{'' if len(args.epsilons) == 1 else f'-{len(args.epsilons)}plans'}"
                       f"{'' if args.coupling_tasks is None else f'-tasks{args.coupling_tasks}'}"
                       ".json")
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
