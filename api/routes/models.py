"""POST /v1/models (register a net directory under the model root), GET /v1/models/{id}."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.db import nets
from api.deps import CallerDep, SessionDep, SettingsDep
from api.routes.responses import errors
from api.schemas import ModelCreate, ModelPublic

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors())
def register_model(
    body: ModelCreate, session: SessionDep, caller: CallerDep, settings: SettingsDep
) -> ModelPublic:
    """Register a net directory (config.json + model.safetensors) under the model root."""
    net = nets.register_net(session, caller, body.path, settings.resolved_model_root)
    return ModelPublic.model_validate(net)


@router.get("/{model_id}", responses=errors(404))
def get_model(model_id: str, session: SessionDep, caller: CallerDep) -> ModelPublic:
    return ModelPublic.model_validate(nets.get_net(session, caller, model_id))
