"""A text counterfactual dataset for the Hugging Face job tests: an MCQA bank written as
JSONL rows of words (what a user uploads for a net with a tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from core.causal.bank import PairBank
from core.causal.mcqa import VOCAB


def write_text_pairs(path: Path, bank: PairBank) -> None:
    """One JSONL row per pair of ``bank``: base and source as space-separated words."""

    def text(ids: torch.Tensor) -> str:
        return " ".join(VOCAB[i] for i in ids.tolist())

    rows = [{"base": text(bank.base[i]), "source": text(bank.source[i]),
             "base_label": int(bank.base_labels[i, 0]),
             "counterfactual_labels": {v: int(y[i, 0])
                                       for v, y in bank.counterfactual_labels.items()}}
            for i in range(bank.size)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
