"""The queue view orders only what it shows: the same entries as the whole queue's fair-share
order cut at ``limit``, for every limit, with some owners running jobs."""

from __future__ import annotations

from sqlalchemy.orm import Session

from api.auth import Caller
from api.db import jobs
from api.db.queue_view import queue_view
from tests.unit.api.db.test_jobs import claim, migrated, session, submit  # noqa: F401

ADMIN = Caller("root", True, "k0")


def test_the_queue_view_is_the_whole_orders_prefix(session: Session) -> None:  # noqa: F811
    for owner, priorities in (("ann", [0, 0, 2, 0, 1, 0]), ("bob", [0, 1, 0]), ("cy", [0]),
                              ("dee", [3, 0, 0, 0])):
        for priority in priorities:
            submit(session, owner, priority)
    claim(session)  # someone runs a job: its owner goes after those running fewer
    claim(session)
    whole = jobs.fair_share_order(session)  # every queued job, ordered
    assert len(whole) == 12
    for limit in range(1, len(whole) + 2):
        entries, loads, queued = queue_view(session, ADMIN, limit)
        assert [e.job_id for e in entries] == whole[:limit]
        assert [e.position for e in entries] == list(range(min(limit, len(whole))))
        assert queued == len(whole)
        assert sum(load.queued for load in loads) == len(whole)
        assert sum(load.running for load in loads) == 2
    mine, _, _ = queue_view(session, Caller("bob", False, "k1"), len(whole))
    assert {e.owner for e in mine if e.mine} == {"bob"}
    assert all(e.job_id is None and e.name is None for e in mine if not e.mine)
