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
    from api.logs import configure_logging
    from api.metrics import serve_metrics
    from api.preflight import check_start
    from api.services import build_services
    from api.settings import Settings

    settings = Settings(**({"scheduler_slots": args.slots} if args.slots else {}))
    configure_logging(settings.log_format, settings.log_level)
    check_start(settings, "database", "redis", "ray")
    services = build_services(settings, role="scheduler")
    claims = services.claims
    assert claims is not None  # the scheduler role always claims
    fixed = settings.scheduler_slots is not None or services.engine.pool is None
    _out(f"scheduler slots: {claims.slot_count()} "
         f"({'fixed' if fixed else 'from the cluster, re-read each round'})")
    metrics_server = serve_metrics(services.metrics, settings.host, settings.metrics_port)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if metrics_server is not None:
        _out(f"metrics on http://{settings.host}:{settings.metrics_port}/metrics")
    worker = claims.runner.worker_id
    _out(f"scheduler {worker} waiting for the leader lock")
    services.start()
    while not done.is_set():
        if claims.became_leader.wait(0.2):
            _out(f"scheduler {worker} is the leader")
            claims.became_leader.clear()
        done.wait(0.1)
    services.close()
    if metrics_server is not None:
        metrics_server.shutdown()
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
