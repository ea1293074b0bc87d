"""Run the Alembic migrations of the ``migrations`` package against a database URL."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

MIGRATION_LOCK_KEY = 0x504C4F55  # the advisory lock that serialises upgrades ("PLOU")


def migrations_dir() -> Path:
    """The Alembic script directory: the installed ``migrations`` package (package data in
    the wheel), or the repository's ``migrations/`` in a checkout or an editable install."""
    # Alembic needs a directory on disk: a regular package that pip installed (wheel or
    # editable) or a checkout's is one
    return Path(str(resources.files("migrations")))


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the schema at ``url`` up to ``revision`` (creates it on an empty database).

    On Postgres, concurrent callers (API replicas, the scheduler and a migrate step starting
    together) take turns on an advisory lock: the first migrates, the others find the schema
    at ``revision`` and do nothing.
    """
    if not url.startswith("postgresql"):
        command.upgrade(alembic_config(url), revision)
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
            lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            try:
                command.upgrade(alembic_config(url), revision)
            finally:
                lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
    finally:
        engine.dispose()


def downgrade_database(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
