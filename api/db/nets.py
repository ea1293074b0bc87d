"""Registered nets: directories under the model root, with their config and digest."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.owned import get_owned
from api.db.tables import RegisteredNet
from core.errors import ModelLoadError
from core.nets.io import load_net, net_digest


def resolve_under(root: Path, relative: str) -> Path:
    """``root / relative`` with symlinks resolved, refused unless it stays inside ``root``.

    Raises:
        ModelLoadError: an absolute path, or one that leaves the root.
    """
    if Path(relative).is_absolute():
        raise ModelLoadError("give the path relative to the model root", "path")
    directory = (root / relative).resolve()
    if not directory.is_relative_to(root) or directory == root:
        raise ModelLoadError("the path leaves the model root", "path")
    return directory


def register_net(session: Session, caller: Caller, relative: str, root: Path) -> RegisteredNet:
    """Load the net once (so a broken directory is refused now) and record it.

    Raises:
        ModelLoadError: outside the root, missing or malformed files.
    """
    directory = resolve_under(root, relative)
    if not directory.is_dir():
        raise ModelLoadError("no such directory under the model root", "path")
    load_net(directory, root)
    config = json.loads((directory / "config.json").read_text())
    net = RegisteredNet(owner=caller.owner, path=str(directory.relative_to(root)),
                        config=config, sha256=net_digest(directory))
    session.add(net)
    session.commit()
    return net


def get_net(session: Session, caller: Caller, net_id: str) -> RegisteredNet:
    """Raises: NotFoundError: missing or another owner's (admins see all)."""
    return get_owned(session, caller, RegisteredNet, net_id, "model")
