"""bench/transformer_resume.py: its every-token baseline agrees with the engine's resume."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_every_token_baseline_gives_the_engine_signatures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its neighbours
    bench = importlib.import_module("transformer_resume")
    rows = bench.measure(pairs=24, repeats=1, device=bench.torch.device("cpu"))
    assert [r["block"] for r in rows] == [0, 1, 2]
    assert [r["blocks_rerun"] for r in rows] == [2, 1, 0]
    for row in rows:
        assert row["sites"] > 0
        assert row["max_signature_difference"] < 1e-5
