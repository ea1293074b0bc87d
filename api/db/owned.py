"""The one ownership check: a row exists and the caller owns it, or the caller is an admin."""

from __future__ import annotations

from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.tables import is_resource_id
from api.errors import NotFoundError


class Owned(Protocol):
    owner: str


Row = TypeVar("Row", bound=Owned)


def get_owned(session: Session, caller: Caller, table: type[Row], row_id: str,
              what: str) -> Row:
    """The row ``row_id`` of ``table`` if the caller may see it (fresh from the database).

    Raises:
        NotFoundError: no such row, or another owner's (unless the caller is an admin);
            the two are indistinguishable on purpose.
    """
    row = session.get(table, row_id, populate_existing=True) if is_resource_id(row_id) else None
    if row is None or (row.owner != caller.owner and not caller.is_admin):
        raise NotFoundError(f"no such {what}", row_id)
    return row
