"""Maintainer subcommands: ``plot admin requeue | cancel | purge JOB_ID``, run against the
configured database (any owner's job), each one transaction of the job state machine."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    """Add ``plot admin`` and its actions to the ``plot`` parser's subparsers."""
    admin = commands.add_parser("admin", help="maintainer actions on any owner's job "
                                "(in the configured database)")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
        ("requeue", run_requeue, "put a failed or cancelled job back in the queue (fresh "
         "attempts; it resumes after its checkpointed levels)"),
        ("cancel", run_cancel, "cancel a queued job now, or a running one at its next batch"),
        ("purge", run_purge, "delete an ended job, its level checkpoints and its event "
         "stream"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
        action.set_defaults(handler=handler)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@contextmanager
def _context() -> Iterator[tuple[Any, Any]]:
    """The settings and a session on the migrated database (checked first)."""
    from api.db.migrate import upgrade_database
    from api.db.session import make_engine, make_sessions
    from api.preflight import check_start
    from api.settings import Settings

    settings = Settings()
    settings.make_dirs()
    check_start(settings, "database")
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessions(engine)() as session:
            yield settings, session
    finally:
        engine.dispose()


def _publish(settings: Any, job_id: str, kind: str, data: dict[str, Any]) -> None:
    """Tell the job's event stream (best effort: the database is the truth)."""
    from api.services import make_bus

    bus = make_bus(settings)
    try:
        bus.publish(job_id, kind, data)
    except Exception:
        log.warning("event %s not published (bus unavailable)", kind,
                    extra={"job_id": job_id})
    finally:
        bus.close()


def run_requeue(args: argparse.Namespace) -> int:
    from api.db import admin_jobs

    with _context() as (settings, session):
        levels = admin_jobs.requeue_job(session, args.job_id)
    _publish(settings, args.job_id, "queued", {"reason": "requeued by an admin"})
    _out(f"requeued job {args.job_id}; it resumes after {levels} checkpointed level(s)")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from api.db import admin_jobs
    from workers.job_status import JobStatus

    with _context() as (settings, session):
        status = admin_jobs.cancel_job(session, args.job_id)
    if status == JobStatus.CANCELLED:
        _publish(settings, args.job_id, "cancelled", {"reason": "cancelled by an admin"})
        _out(f"cancelled job {args.job_id}")
    else:
        _out(f"cancel requested for running job {args.job_id}; it stops at its next batch")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    from api.db import admin_jobs
    from api.services import make_bus

    with _context() as (settings, session):
        levels = admin_jobs.purge_job(session, args.job_id)
    bus = make_bus(settings)
    try:
        stream = "its event stream" if bus.discard(args.job_id) else "no event stream"
    except Exception:
        stream = "its event stream NOT removed (bus unavailable; it expires by itself)"
    finally:
        bus.close()
    _out(f"purged job {args.job_id}: {levels} level checkpoint(s), {stream}")
    return 0
