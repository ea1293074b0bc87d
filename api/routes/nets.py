"""POST /v1/models (register a net directory under the model root), GET /v1/models/{id}:
the registered nets (the route keeps the users' word, the code says net)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.db import nets
from api.deps import CallerDep, SessionDep, SettingsDep
from api.routes.responses import errors
from api.schemas import NetCreate, NetPublic
from core.nets.size import NetLimits

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 413))
def register_net(
    body: NetCreate, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> NetPublic:
    """Register a net directory (config.json + model.safetensors) under the model root."""
    net = nets.register_net(session, caller, body.path, settings.resolved_model_root,
                             NetLimits(max_parameters=settings.max_net_parameters))
    return NetPublic.model_validate(net)


@router.get("/{net_id}", responses=errors(404))
def get_net(net_id: str, session: SessionDep, caller: CallerDep) -> NetPublic:
    return NetPublic.model_validate(nets.get_net(session, caller, net_id))
