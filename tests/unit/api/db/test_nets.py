"""Registering a net: the deployment's net limits (PLOT_MAX_NET_PARAMETERS) are applied from
config.json before any weight is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db import nets
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import RegisteredNet
from core.errors import ModelLoadError
from core.nets.io import save_net
from core.nets.registry import build_net
from core.nets.size import NetLimits, estimate_net_size

ALICE = Caller("alice", False, "k1")
MLP = {"arch": "mlp", "input_dim": 16, "hidden_dims": [16, 16, 16], "num_classes": 2}


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path / 'nets.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    with make_sessions(engine)() as session:
        yield session
    engine.dispose()


def test_a_net_over_the_deployments_parameter_limit_is_refused_before_loading(
        session: Session, tmp_path: Path) -> None:
    root = tmp_path / "models"
    directory = save_net(build_net(MLP), root / "mlp")
    parameters = estimate_net_size(MLP).parameters
    (directory / "model.safetensors").write_bytes(b"never read")  # a load would fail
    with pytest.raises(ModelLoadError) as error:
        nets.register_net(session, ALICE, "mlp", root, NetLimits(max_parameters=parameters - 1))
    assert "max_parameters" in error.value.message and str(root) not in error.value.message
    assert session.scalar(select(func.count()).select_from(RegisteredNet)) == 0


def test_a_net_within_the_limit_is_registered(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "models"
    save_net(build_net(MLP), root / "mlp")
    parameters = estimate_net_size(MLP).parameters
    net = nets.register_net(session, ALICE, "mlp", root, NetLimits(max_parameters=parameters))
    assert net.config["arch"] == "mlp" and net.path == "mlp"
