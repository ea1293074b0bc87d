"""bench/handle_ceiling.py: the ceiling is chosen on the test bank's pairs, from the same
menu as the handle chosen on calibration, so it is never below that handle; likewise on the
population bank, for both the authors' and the per-variable calibration bank."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from core.job import JobContext

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
def test_ceiling_is_chosen_on_the_test_pairs_and_bounds_the_chosen_handle(
        heq_net: Path, engine_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("handle_ceiling")
    context = JobContext(model_root=engine_cache, data_root=engine_cache,
                         cache_dir=engine_cache, device="cpu")
    run = bench.run_seed("hierarchical_equality", 0, "paper", context, sizes=(200, 200, 100),
                         population_pairs=150, population_pool=4096)
    assert set(run["variables"]) == {"WX", "YZ"}
    for cell in run["variables"].values():
        chosen = cell["chosen"]["test"]
        on_sensitive, on_scored = cell["ceiling_sensitive"], cell["ceiling_scored"]
        # chosen on exactly the pairs it is then scored on
        assert on_sensitive["iia_chosen_on"] == pytest.approx(
            on_sensitive["test"]["sensitivity"], abs=1e-6)
        assert on_scored["iia_chosen_on"] == pytest.approx(
            on_scored["test"]["overall"], abs=1e-6)
        assert on_sensitive["test"]["sensitivity"] >= chosen["sensitivity"] - 1e-6
        assert on_scored["test"]["overall"] >= chosen["overall"] - 1e-6
    population = run["population"]
    assert population["per_variable_calibration_pairs"] == 200
    for cell in population["variables"].values():
        # the population's ceilings are chosen on its own pairs and bound both methods there
        on_sensitive, on_scored = cell["ceiling_sensitive"], cell["ceiling_scored"]
        assert on_sensitive["iia_chosen_on"] == pytest.approx(
            on_sensitive["test"]["sensitivity"], abs=1e-6)
        for method in (cell["chosen"], cell["per_variable_calibration"]["population"]):
            assert on_sensitive["test"]["sensitivity"] >= method["sensitivity"] - 1e-6
            assert on_scored["test"]["overall"] >= method["overall"] - 1e-6
    rows = bench.summary_rows([run])
    table = bench.markdown(rows, "# ceiling")
    assert "| hierarchical_equality | WX |" in table
    on_population = bench.population_markdown(bench.population_rows([run]))
    assert on_population.count("| hierarchical_equality |") == 4  # 2 variables × 2 figures
