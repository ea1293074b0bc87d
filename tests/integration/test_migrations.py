"""Alembic migrations create the schema on an empty database and upgrade in place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select

from api.db.base import Base
from api.db.migrate import downgrade_database, upgrade_database
from api.db.results import load_result
from api.db.session import make_engine, make_sessions
from api.db.tables import Job, JobLevel, new_id
from core.result import JobResult
from tests.integration.forked import ForkedRun, Forker
from workers.job_status import JobStatus

TABLES = {"alembic_version", "api_keys", "jobs", "job_levels", "datasets", "nets"}


@pytest.fixture(params=["postgres", "sqlite"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_upgrade_head_creates_the_schema_the_tables_declare(empty_url: str) -> None:
    engine = make_engine(empty_url)
    assert set(inspect(engine).get_table_names()) == set()
    upgrade_database(empty_url)
    assert set(inspect(engine).get_table_names()) == TABLES
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    engine.dispose()


def test_upgrade_is_in_place_and_downgrade_removes_everything(empty_url: str) -> None:
    upgrade_database(empty_url)
    engine = make_engine(empty_url)
    with make_sessions(engine)() as session:
        session.add(Job(owner="alice", status="queued", spec={"task": {}}, priority=0))
        session.commit()
    upgrade_database(empty_url)  # already at head: nothing is touched
    with make_sessions(engine)() as session:
        assert [job.owner for job in session.scalars(select(Job))] == ["alice"]
    downgrade_database(empty_url, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade_database(empty_url)
    assert set(inspect(engine).get_table_names()) == TABLES
    engine.dispose()


def test_concurrent_upgrades_of_an_empty_postgres_take_turns(plot_forker: Forker,
                                                              postgres_url: str) -> None:
    """API replicas, the scheduler and a migrate step may start together: every upgrade
    succeeds and the schema is created once. Four processes started at the same moment
    (forked from one that imported the service once: tests/integration/forked.py)."""
    code = ("import sys; from api.db.migrate import upgrade_database; "
            "upgrade_database(sys.argv[1])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLOT_")}
    results = plot_forker.run([ForkedRun([postgres_url], env, code=code)] * 4, timeout_s=120)
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr[-500:] for r in results]
    engine = make_engine(postgres_url)
    assert set(inspect(engine).get_table_names()) == TABLES
    engine.dispose()


BEFORE_TYPED = Path(__file__).parents[1] / "fixtures" / "heq_result_before_typed.json"


def test_levels_stored_inside_old_results_move_out_and_come_back_on_downgrade(
        empty_url: str) -> None:
    """Rows written when each level was stored twice (in job_levels and in jobs.result) keep
    only the checkpoints after the upgrade, and the result route assembles the same result."""
    document = json.loads(BEFORE_TYPED.read_text())
    levels = [document["levels"][0], {**document["levels"][0], "index": 1}]
    document["levels"] = levels
    upgrade_database(empty_url, "abaa55af887c")  # the schema before levels were stored once
    engine = make_engine(empty_url)
    job_id, waiting_id = new_id(), new_id()
    with make_sessions(engine)() as session:
        # Core inserts of the columns that schema has (the ORM class has later ones)
        session.execute(insert(Job).values(id=job_id, owner="alice", spec={"task": {}},
                                           status=JobStatus.SUCCEEDED, result=document))
        session.execute(insert(Job).values(id=waiting_id, owner="bob", spec={"task": {}},
                                           status=JobStatus.QUEUED))
        session.add_all([JobLevel(job_id=job_id, level=index, checkpoint=level)
                         for index, level in enumerate(levels)])
        session.commit()
    upgrade_database(empty_url)
    with make_sessions(engine)() as session:
        stored = session.get(Job, job_id)
        assert stored is not None and stored.result is not None
        assert "levels" not in stored.result
        assert stored.result == {k: v for k, v in document.items() if k != "levels"}
        loaded = load_result(session, job_id, stored.result)
        assert loaded == JobResult.model_validate(document)
        unfinished = session.get(Job, waiting_id)
        assert unfinished is not None and unfinished.result is None
    downgrade_database(empty_url, "abaa55af887c")
    with make_sessions(engine)() as session:
        restored = session.scalar(select(Job.result).where(Job.id == job_id))
        assert restored == document
    engine.dispose()
