"""Annotated dependency aliases; each resolves an object the lifespan put on app.state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.auth import Caller, authenticate
from api.errors import AuthError
from api.metrics import ServiceMetrics
from api.settings import Settings
from workers.ports import EventBus

bearer = HTTPBearer(auto_error=False, description="an API key: plot_<key_id>_<secret>")


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_bus(request: Request) -> EventBus:
    return request.app.state.bus  # type: ignore[no-any-return]


def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


# scope="function": the session (and its pooled connection) is released when the handler
# returns, before the body is sent, so a long SSE stream holds no database connection.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BusDep = Annotated[EventBus, Depends(get_bus)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


def get_caller(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """Raises: AuthError: no bearer token, or not a valid key."""
    if credentials is None:
        raise AuthError("an API key is required (Authorization: Bearer …)", "Authorization")
    return authenticate(session, credentials.credentials)


CallerDep = Annotated[Caller, Depends(get_caller)]
