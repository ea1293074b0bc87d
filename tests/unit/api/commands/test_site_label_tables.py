"""The CLI's handle table names a token site with the token its level labelled it with."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from api.commands.engine import results_table, site_label
from core.result import JobResult

STORED = Path(__file__).parents[3] / "fixtures" / "heq_result_before_typed.json"


def test_the_handle_table_shows_a_sites_label_and_the_id_without_one() -> None:
    result = JobResult.model_validate(json.loads(STORED.read_text()))
    top = result.handles["WX"].sites[0]
    level = result.levels[0].model_copy(update={"site_labels": {top: f'{top} "Paris"'}})
    labelled = result.model_copy(update={"levels": [level]})
    assert site_label(labelled, 0, top) == f'{top} "Paris"'
    assert site_label(labelled, 0, "layer:1/dims:2") == "layer:1/dims:2"
    console = Console(record=True, width=200)
    console.print(results_table(labelled))
    # columns: verdict, variable, level, top site, …
    rows = {line.split("│")[2].strip(): line for line in console.export_text().splitlines()
            if line.count("│") > 2}
    assert f'{top} "Paris"' in rows["WX"]
    assert result.handles["YZ"].sites[0] in rows["YZ"] and '"' not in rows["YZ"]
