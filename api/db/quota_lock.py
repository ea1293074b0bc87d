"""The per-owner quota lock: a count of what an owner holds and the insert it allows are one
step, on both backends (parallel requests at the limit's edge cannot all pass)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

OWNER_LOCK_SPACE = 0x51554F54  # "QUOT": the first key of the per-owner quota locks


def lock_owner_quota(session: Session, owner: str) -> None:
    """Serialise ``owner``'s quota checks until the session's transaction ends, so a count
    and the insert it allows are one step (parallel submissions cannot all pass at the edge).

    Postgres: a transaction-scoped advisory lock keyed by (``OWNER_LOCK_SPACE``, the owner's
    hash); the two-key form never meets the scheduler's one-key election lock. SQLite: the
    transaction becomes ``BEGIN IMMEDIATE``, the database's write lock (SQLite has one
    writer anyway; pysqlite would otherwise read the count outside any transaction and only
    begin at the insert).
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:owner))"),
                           {"space": OWNER_LOCK_SPACE, "owner": owner})
    elif dialect == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and dbapi.in_transaction:  # a write of this request: keep it
            session.commit()
            connection = session.connection()
        connection.exec_driver_sql("BEGIN IMMEDIATE")
