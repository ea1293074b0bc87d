"""bench/hf_resume.py: the replayed prefix gives the recomputed logits on its GPT-2."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

pytest.importorskip("transformers")
BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_replayed_and_recomputed_sweeps_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its neighbours
    bench = importlib.import_module("hf_resume")
    rows = bench.measure(layers=3, width=32, heads=2, length=6, rows=4, repeats=1)
    assert [(r["block"], r["blocks_replayed"]) for r in rows] == [(0, 1), (1, 2), (2, 3)]
    for row in rows:
        assert row["max_logit_difference"] < 1e-5
