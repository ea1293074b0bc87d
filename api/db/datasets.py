"""Uploaded counterfactual datasets: validated, stored as ``{sha256}.jsonl``, owned."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.nets import get_net, hide_root
from api.db.owned import get_owned
from api.db.quota_lock import lock_owner_quota
from api.db.tables import Dataset
from api.errors import NotFoundError, QuotaError
from core.causal.dataset import check_dataset_bytes
from core.errors import ModelLoadError, SpecError
from core.net_text import NetText, load_net_text


def registered_net_text(session: Session, caller: Caller, net_id: str, model_root: Path,
                        where: str) -> NetText | None:
    """The text side of the caller's registered net ``net_id`` (its tokenizer, never its
    weights), or None when the net reads no text.

    Raises:
        SpecError: no such registered net of the caller (``where`` names the field).
        ModelLoadError: its tokenizer or config does not load (paths relative to the root).
    """
    try:
        net = get_net(session, caller, net_id)
    except NotFoundError:
        raise SpecError("no such registered model", where) from None
    try:
        return load_net_text(model_root / net.path)
    except ModelLoadError as error:
        raise hide_root(error, model_root) from None


def store_dataset(
    session: Session, caller: Caller, name: str, data: bytes, dataset_dir: Path,
    max_stored_bytes: int, net: tuple[str, NetText | None] | None = None,
) -> Dataset:
    """Validate ``data`` row by row, write it under its digest, and record it.

    Args:
        net: (id, text side) of the registered net the dataset is uploaded for: text rows
            are tokenized with its tokenizer now (and refused without one). None: text rows
            are checked to be text and tokenized when a job names its net.

    Raises:
        QuotaError: the owner's datasets would pass ``max_stored_bytes`` in all (checked
            under the owner's quota lock, so parallel uploads cannot all pass).
        DatasetError: a malformed row or one its net cannot read (text over the net's
            ``max_len``), naming ``name:line``. Nothing is written then.
    """
    text = net[1] if net is not None else None
    # before the lock: parsing may take seconds
    summary = check_dataset_bytes(
        data, name, text.encode if text is not None else None,
        text.input_shape if text is not None else None,
        text.output_shape if text is not None else None, defer_text=net is None,
        label_names=text.label_names if text is not None else ())
    lock_owner_quota(session, caller.owner)  # the sum and the insert are one step
    stored = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.owner == caller.owner)
    ) or 0
    if stored + len(data) > max_stored_bytes:
        session.rollback()  # releases the lock
        raise QuotaError(f"datasets would total {stored + len(data)} bytes "
                         f"(limit {max_stored_bytes})", "owner")
    digest = hashlib.sha256(data).hexdigest()
    target = dataset_dir / f"{digest}.jsonl"
    if not target.exists():  # content-addressed: the same bytes are stored once
        with tempfile.NamedTemporaryFile(dir=dataset_dir, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, target)
    checked = [net[0]] if net is not None and summary.text else []
    dataset = Dataset(owner=caller.owner, name=name, sha256=digest, size_bytes=len(data),
                      rows=summary.rows, variables={"names": list(summary.variables),
                                                    "text": summary.text,
                                                    "tokenized_for": checked})
    session.add(dataset)
    session.commit()
    return dataset


def is_text(dataset: Dataset) -> bool:
    """Whether the dataset's inputs are text (False for one stored before text existed)."""
    return bool(dataset.variables.get("text", False))


def tokenized_for(dataset: Dataset) -> list[str]:
    """The registered nets whose tokenizer has read every row of a text dataset."""
    nets = dataset.variables.get("tokenized_for", [])
    return [str(n) for n in nets] if isinstance(nets, list) else []


def check_text_for_net(session: Session, caller: Caller, dataset: Dataset,
                       net_id: str | None, dataset_dir: Path, model_root: Path) -> None:
    """Tokenize a text dataset with the tokenizer of the net a job names, once per net: a
    row the net cannot read is refused now, naming the uploaded ``name:line``.

    Raises:
        SpecError: ``model.id`` is missing or names a net without a tokenizer.
        DatasetError: a row does not tokenize or does not fit the net's ``max_len``.
    """
    if not is_text(dataset) or (net_id is not None and net_id in tokenized_for(dataset)):
        return
    if net_id is None:
        raise SpecError("the dataset holds text: give model.id, a registered net with a "
                        "tokenizer", "model.id")
    text = registered_net_text(session, caller, net_id, model_root, "model.id")
    if text is None:
        raise SpecError("the registered net has no tokenizer, and the dataset holds text",
                        "model.id")
    data = (dataset_dir / f"{dataset.sha256}.jsonl").read_bytes()
    check_dataset_bytes(data, dataset.name, text.encode, text.input_shape, text.output_shape,
                        defer_text=False, label_names=text.label_names)
    dataset.variables = {**dataset.variables,
                         "tokenized_for": [*tokenized_for(dataset), net_id]}
    session.commit()


def get_dataset(session: Session, caller: Caller, dataset_id: str) -> Dataset:
    """Raises: NotFoundError: missing or another owner's (admins see all)."""
    return get_owned(session, caller, Dataset, dataset_id, "dataset")
