"""The scheduler's election: ``LeaderLock`` (``workers.ports.Leadership``) is a Postgres
advisory lock held on a dedicated connection, so one ``plot scheduler`` claims jobs at a time
(``workers.claim_loop.ClaimLoop``).

A second instance waits on the lock and takes over when the first one's connection goes
(its process died). On SQLite (the embedded default) there is one process, so no lock.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)

LOCK_KEY = 0x504C4F54  # "PLOT": the advisory lock id of the scheduler's election


class LeaderLock:
    """``pg_try_advisory_lock`` held on a dedicated connection for as long as it lives."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None
        self._is_postgres = engine.dialect.name == "postgresql"

    def try_acquire(self) -> bool:
        if not self._is_postgres:
            return True
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        won = self._connection.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                       {"k": self._key}).scalar()
        return bool(won)

    def still_held(self) -> bool:
        """False when the lock's connection broke (another instance may now lead)."""
        if not self._is_postgres:
            return True
        if self._connection is None:
            return False
        try:
            held = self._connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND objid = :k"), {"k": self._key & 0xFFFFFFFF},
            ).scalar()
        except Exception:
            log.exception("leader lock connection lost")
            self.release()
            return False
        return bool(held)

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # closing the session drops its advisory locks
            except Exception:
                log.exception("closing the leader lock connection")
            self._connection = None

