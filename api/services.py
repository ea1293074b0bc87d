"""The service's parts, built once from the settings for every entry point: ``plot serve``
(the API app's lifespan) and ``plot scheduler`` (and the benchmarks) wire the same database,
event bus, engine, job store, runner and claim loop here."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine as SqlEngine
from sqlalchemy.orm import Session, sessionmaker

from api.db.job_store import SqlJobStore
from api.db.leader_lock import LeaderLock
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.metrics import ServiceMetrics
from api.settings import Settings
from workers.claim_loop import ClaimLimits, ClaimLoop
from workers.engine import Engine
from workers.events import InProcessBus, RedisStreamBus
from workers.ports import EventBus
from workers.runner import JobRunner, RunnerConfig


def make_bus(settings: Settings) -> EventBus:
    """Redis Streams when PLOT_REDIS_URL is set, else the in-process bus; both keep at most
    PLOT_EVENTS_MAXLEN events per job, and a Redis stream expires PLOT_EVENTS_TTL_S after
    its last event."""
    if settings.redis_url:
        return RedisStreamBus(settings.redis_url, settings.redis_prefix, settings.events_maxlen,
                              settings.events_ttl_s)
    return InProcessBus(settings.events_maxlen)


def make_job_engine(settings: Settings, spawn_actors: bool = True) -> Engine:
    """The engine the settings ask for; with ``ray_address`` set (and ``spawn_actors``) this
    connects to Ray (or starts a local one) and spawns the intervention actors."""
    pool = None
    if settings.ray_address and spawn_actors:
        from workers import cluster  # Ray loads only when configured
        from workers.actor_backends import ActorBackends

        cluster.connect(settings.ray_address, settings.ray_num_cpus)
        pool = ActorBackends(cluster.make_pool(settings.ray_actors))
    return Engine(model_root=settings.resolved_model_root, data_root=settings.dataset_dir,
                  cache_dir=settings.resolved_cache_dir, device=settings.device, pool=pool)


@dataclass
class Services:
    """One process's service parts. ``claims`` is None in an API replica that runs no jobs.

    Attributes:
        database: the SQLAlchemy engine (its pool of connections).
        sessions: its session factory.
        bus: the jobs' progress streams.
        engine: runs a resolved job spec (holds the intervention actors, if any).
        metrics: the Prometheus registry of this process.
        claims: the claim loop (not started), with its runner and SQL job store.
    """

    settings: Settings
    database: SqlEngine
    sessions: sessionmaker[Session]
    bus: EventBus
    engine: Engine
    metrics: ServiceMetrics
    claims: ClaimLoop | None

    def start(self) -> None:
        if self.claims is not None:
            self.claims.start()

    def close(self) -> None:
        """Stop claiming (running jobs go back to the queue), then close what was opened."""
        if self.claims is not None:
            self.claims.stop()
        self.engine.close()
        self.bus.close()
        self.database.dispose()


def scheduler_claims(settings: Settings, database: SqlEngine, store: SqlJobStore,
                     runner: JobRunner, engine: Engine) -> ClaimLoop:
    """``plot scheduler``'s loop: elected by a Postgres advisory lock, slots from the
    settings or the cluster's GPUs, the actor pool shrunk after an idle spell."""
    limits = ClaimLimits(settings.scheduler_slots or ClaimLimits.slots,
                         settings.max_running_jobs_per_owner, settings.poll_s)
    slots = on_round = None
    if settings.scheduler_slots is None and engine.pool is not None:
        from workers.cluster import gpu_slots

        slots = gpu_slots(engine.pool.pool, fallback=limits.slots)
    if settings.ray_idle_release_s > 0 and engine.pool is not None:
        from workers.idle_release import IdleRelease

        pool = engine.pool.pool
        on_round = IdleRelease(pool, len(pool.actors), settings.ray_idle_release_s)
    return ClaimLoop(store, runner, limits, LeaderLock(database), slots, on_round)


def build_services(settings: Settings, role: str = "serve") -> Services:
    """Migrate the database and build the parts of one process.

    Args:
        role: ``serve`` — the API, with one in-process claim slot unless
            ``PLOT_RUN_JOBS=false`` (then no claim loop and no actors); ``scheduler`` — the
            elected scheduler driving the cluster's actors; ``api`` — no claim loop.
    """
    settings.make_dirs()
    upgrade_database(settings.resolved_database_url)
    database = make_engine(settings.resolved_database_url)
    sessions = make_sessions(database)
    runs_jobs = role == "scheduler" or (role == "serve" and settings.run_jobs)
    engine = make_job_engine(settings, spawn_actors=runs_jobs)
    metrics = ServiceMetrics()
    metrics.watch_actor_restarts(engine.actor_restarts)
    bus = make_bus(settings)
    claims = None
    if runs_jobs:
        store = SqlJobStore(sessions)
        runner = JobRunner(store, bus, engine,
                           RunnerConfig(settings.lease_s, settings.max_attempts), metrics)
        if role == "scheduler":
            claims = scheduler_claims(settings, database, store, runner, engine)
        else:  # the embedded default: one job at a time, no election
            claims = ClaimLoop(store, runner, ClaimLimits(
                1, settings.max_running_jobs_per_owner, settings.poll_s))
    return Services(settings, database, sessions, bus, engine, metrics, claims)
