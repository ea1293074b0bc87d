"""Alembic environment: target metadata from api.db.base, URL from the caller or Settings."""

from __future__ import annotations

from alembic import context

import api.db.tables  # noqa: F401  (registers the tables on the metadata)
from api.db.base import Base
from api.db.session import make_engine
from api.settings import Settings

config = context.config


def database_url() -> str:
    """The URL handed over by ``api.db.migrate`` or, from the alembic CLI, the Settings'."""
    url = config.attributes.get("database_url")
    return str(url) if url else Settings().resolved_database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=Base.metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(database_url())
    with engine.connect() as connection:
        # render_as_batch: SQLite can only ALTER a table by copying it.
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
