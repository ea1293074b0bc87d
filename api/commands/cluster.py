"""Cluster subcommands: ``plot scheduler`` (the elected job scheduler, driving the Ray
actors) and ``plot worker`` (a Ray node that joins PLOT_RAY_ADDRESS)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    """Add the cluster subcommands to the ``plot`` parser's subparsers."""
    scheduler = commands.add_parser(
        "scheduler", help="claim queued jobs fair-share and run them (one leader at a time)")
    scheduler.add_argument("--slots", type=int, default=None,
                           help="jobs at once (default PLOT_SCHEDULER_SLOTS, else one per "
                           "free GPU of the Ray cluster, else 2)")
    scheduler.set_defaults(handler=run_scheduler)
    worker = commands.add_parser("worker", help="join the Ray cluster at PLOT_RAY_ADDRESS "
                                 "as a node for intervention actors (ray start --block)")
    worker.add_argument("--num-gpus", type=int, default=None)
    worker.add_argument("--num-cpus", type=int, default=None)
    worker.set_defaults(handler=run_worker)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_scheduler(args: argparse.Namespace) -> int:
    from api.app import make_bus
    from api.db.migrate import upgrade_database
    from api.db.session import make_engine, make_sessions
    from api.executor import make_executor
    from api.logs import configure_logging
    from api.metrics import ServiceMetrics, serve_metrics
    from api.preflight import check_start
    from api.runner import JobRunner
    from api.scheduler import Scheduler, SchedulerLimits
    from api.settings import Settings

    settings = Settings(**({"scheduler_slots": args.slots} if args.slots else {}))
    configure_logging(settings.log_format, settings.log_level)
    settings.make_dirs()
    check_start(settings, "database", "redis", "ray")
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessions(engine)
    bus = make_bus(settings)
    executor = make_executor(settings)
    metrics = ServiceMetrics()
    metrics.watch_actor_restarts(executor.actor_restarts)
    metrics_server = serve_metrics(metrics, settings.host, settings.metrics_port)
    runner = JobRunner(sessions, bus, executor, metrics,
                       settings.lease_s, settings.max_attempts, settings.poll_s)
    limits = SchedulerLimits(settings.scheduler_slots or SchedulerLimits.slots,
                             settings.max_running_jobs_per_owner, settings.poll_s)
    slots = None
    if settings.scheduler_slots is None and executor.pool is not None:
        from workers.cluster import gpu_slots

        slots = gpu_slots(executor.pool.pool, fallback=limits.slots)
    on_round = None
    if settings.ray_idle_release_s > 0 and executor.pool is not None:
        from workers.idle_release import IdleRelease

        pool = executor.pool.pool
        on_round = IdleRelease(pool, len(pool.actors), settings.ray_idle_release_s)
    scheduler = Scheduler(engine, sessions, runner, limits, settings.lease_s,
                          settings.max_attempts, slots, on_round)
    _out(f"scheduler slots: {scheduler.slot_count()} "
         f"({'fixed' if slots is None else 'from the cluster, re-read each round'})")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if metrics_server is not None:
        _out(f"metrics on http://{settings.host}:{settings.metrics_port}/metrics")
    _out(f"scheduler {runner.worker_id} waiting for the leader lock")
    scheduler.start()
    while not done.is_set():
        if scheduler.became_leader.wait(0.2):
            _out(f"scheduler {runner.worker_id} is the leader")
            scheduler.became_leader.clear()
        done.wait(0.1)
    scheduler.stop()
    if metrics_server is not None:
        metrics_server.shutdown()
    executor.close()
    bus.close()
    engine.dispose()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from api.errors import ConfigError
    from api.preflight import check_ray_reachable
    from api.settings import Settings

    address = Settings().ray_address
    if not address or address == "local" or address.startswith("ray://"):
        raise ConfigError("set it to the Ray head's host:port (its GCS port)",
                          "PLOT_RAY_ADDRESS")
    check_ray_reachable(address)
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    command = [ray_bin, "start", "--address", address, "--block"]
    if args.num_gpus is not None:
        command += ["--num-gpus", str(args.num_gpus)]
    if args.num_cpus is not None:
        command += ["--num-cpus", str(args.num_cpus)]
    os.execv(ray_bin, command)
