"""Registered nets: directories under the model root, with their config and digest."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.owned import get_owned
from api.db.tables import RegisteredNet
from core.errors import ModelLoadError
from core.nets.io import load_net, net_digest
from core.nets.size import DEFAULT_NET_LIMITS, NetLimits, check_net_size

MAX_NET_FILES = 10_000  # a net directory with more entries is refused, not walked on


def resolve_under(root: Path, relative: str) -> Path:
    """``root / relative`` with symlinks resolved, refused unless it stays inside ``root``.

    Raises:
        ModelLoadError: an absolute path, one that leaves the root, or cannot be resolved.
    """
    if Path(relative).is_absolute():
        raise ModelLoadError("give the path relative to the model root", "path")
    try:
        directory = (root / relative).resolve()
    except (OSError, ValueError, RuntimeError):  # too long, NUL, a symlink loop
        raise ModelLoadError("the path cannot be resolved", "path") from None
    if not directory.is_relative_to(root) or directory == root:
        raise ModelLoadError("the path leaves the model root", "path")
    return directory


def check_files_under(root: Path, directory: Path) -> None:
    """Every entry of ``directory`` (recursively, symlinks followed) resolves under ``root``:
    a Hugging Face directory of links to shards elsewhere is refused like a linked config.

    Raises:
        ModelLoadError: ``where`` names the first entry that leaves the root, relative to
            ``directory``.
    """
    seen = 0
    for parent, dirs, files in os.walk(directory, followlinks=True):  # bounded by the count
        for name in (*dirs, *files):
            seen += 1
            if seen > MAX_NET_FILES:
                raise ModelLoadError(f"more than {MAX_NET_FILES} files in the net directory",
                                     "path")
            entry = Path(parent) / name
            try:
                target = entry.resolve()
            except (OSError, RuntimeError):  # a symlink loop
                target = Path(os.sep)
            if not target.is_relative_to(root):
                raise ModelLoadError("links outside the model root",
                                     str(entry.relative_to(directory)))


def hide_root(error: ModelLoadError, root: Path) -> ModelLoadError:
    """``error`` with the model root's absolute path cut out of its message and ``where``
    (paths are named relative to the root, never as server paths)."""
    prefix = f"{root}{os.sep}"

    def relative(text: str) -> str:
        return text.replace(prefix, "").replace(str(root), ".")

    where = None if error.where is None else relative(error.where)
    return ModelLoadError(relative(error.message), where)


def check_config_size(directory: Path, limits: NetLimits) -> None:
    """Refuse a net whose config.json describes a net over the deployment's ``limits``,
    before any weight is read (a config that does not parse is left to ``load_net``)."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return
    if isinstance(config, dict):
        check_net_size(config, limits)


def register_net(session: Session, caller: Caller, relative: str, root: Path,
                 limits: NetLimits = DEFAULT_NET_LIMITS) -> RegisteredNet:
    """Load the net once (so a broken directory is refused now) and record it.

    Raises:
        ModelLoadError: outside the root (itself or any of its files), missing or malformed
            files, or a net over ``limits`` (``PLOT_MAX_NET_PARAMETERS``); paths in the
            message are relative to the model root.
    """
    directory = resolve_under(root, relative)
    if not directory.is_dir():
        raise ModelLoadError("no such directory under the model root", "path")
    check_files_under(root, directory)
    inside = directory.relative_to(root)
    try:
        check_config_size(directory, limits)
        load_net(inside, root)
    except ModelLoadError as error:
        raise hide_root(error, root) from None
    config = json.loads((directory / "config.json").read_text())
    net = RegisteredNet(owner=caller.owner, path=str(inside),
                        config=config, sha256=net_digest(directory))
    session.add(net)
    session.commit()
    return net


def get_net(session: Session, caller: Caller, net_id: str) -> RegisteredNet:
    """Raises: NotFoundError: missing or another owner's (admins see all)."""
    return get_owned(session, caller, RegisteredNet, net_id, "model")
