"""Uploaded counterfactual datasets: validated, stored as ``{sha256}.jsonl``, owned."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.owned import get_owned
from api.db.quota_lock import lock_owner_quota
from api.db.tables import Dataset
from api.errors import QuotaError
from core.causal.dataset import parse_dataset_bytes


def store_dataset(
    session: Session, caller: Caller, name: str, data: bytes, dataset_dir: Path,
    max_stored_bytes: int,
) -> Dataset:
    """Validate ``data`` row by row, write it under its digest, and record it.

    Raises:
        QuotaError: the owner's datasets would pass ``max_stored_bytes`` in all (checked
            under the owner's quota lock, so parallel uploads cannot all pass).
        DatasetError: a malformed row, naming ``name:line``. Nothing is written then.
    """
    bank = parse_dataset_bytes(data, name)  # before the lock: parsing may take seconds
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
    rows = sum(1 for line in data.splitlines() if line.strip())
    dataset = Dataset(owner=caller.owner, name=name, sha256=digest, size_bytes=len(data),
                      rows=rows, variables={"names": list(bank.variables)})
    session.add(dataset)
    session.commit()
    return dataset


def get_dataset(session: Session, caller: Caller, dataset_id: str) -> Dataset:
    """Raises: NotFoundError: missing or another owner's (admins see all)."""
    return get_owned(session, caller, Dataset, dataset_id, "dataset")
