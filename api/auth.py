"""API keys: ``plot_<key_id>_<secret>`` tokens of which only the sha256 is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.tables import ApiKey, utcnow
from api.errors import AuthError, NotFoundError

TOKEN_PREFIX = "plot"


@dataclass(frozen=True)
class Caller:
    """Who is asking: an owner name and whether it is an admin."""

    owner: str
    is_admin: bool
    key_id: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, owner: str, role: str = "user") -> tuple[ApiKey, str]:
    """Store a new key for ``owner``; return the row and the token (shown once, never stored)."""
    if role not in ("user", "admin"):
        raise ValueError(f"role must be user or admin, got {role!r}")
    key_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(key_id=key_id, token_sha256=hash_token(token), owner=owner, role=role)
    session.add(row)
    session.commit()
    return row, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFoundError("no such key", key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def has_admin_key(session: Session) -> bool:
    query = select(ApiKey.key_id).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None))
    return session.scalars(query.limit(1)).first() is not None


def authenticate(session: Session, token: str) -> Caller:
    """The caller a token belongs to.

    Raises:
        AuthError: malformed, unknown or revoked token.
    """
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or not key_id or not secret:
        raise AuthError("malformed API key", "Authorization")
    row = session.get(ApiKey, key_id)
    if row is None or not hmac.compare_digest(row.token_sha256, hash_token(token)):
        raise AuthError("unknown API key", "Authorization")
    if row.revoked_at is not None:
        raise AuthError("revoked API key", "Authorization")
    return Caller(owner=row.owner, is_admin=row.role == "admin", key_id=row.key_id)
