"""The reference a replayed prefix is checked against: a Hugging Face net's resume with
every block computed."""

from __future__ import annotations

from typing import Any

import torch

from core.nets.hf import HFNet


def recomputed(net: HFNet, trace: Any, edits: dict[str, Any], copies: int = 1) -> torch.Tensor:
    """``resume`` with every block computed (the reference for the replayed prefix)."""
    before, net.replay_prefix = net.replay_prefix, False
    try:
        return net.resume(trace, edits, copies)
    finally:
        net.replay_prefix = before
