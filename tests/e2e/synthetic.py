"""Synthetic job results (JobResult.to_json() shape) for layout tests: any size, no engine."""

from __future__ import annotations

import math
from typing import Any

SPEC: dict[str, Any] = {"task": {"builtin": "hierarchical_equality"},
                        "levels": [{"granularity": "neuron"}]}


def iia(value: float) -> dict[str, Any]:
    return {"overall": value, "sensitivity": value - 0.05, "invariance": min(1.0, value + 0.04),
            "pairs": 200, "sensitive_pairs": 100}


def handle(variable: str, level: int, sites: list[str], value: float) -> dict[str, Any]:
    return {"variable": variable, "level": level, "sites": sites[:2], "weights": [0.6, 0.4],
            "k": 2, "strength": 1.0, "epsilon": 0.03, "beta": None, "iia_calibration": value,
            "iia_test": iia(value), "hard_iia_calibration": value - 0.1,
            "hard_iia_test": iia(value - 0.1)}


def level(index: int, variables: list[str], sites: list[str]) -> dict[str, Any]:
    coupling = [[math.exp(-((s - 7 * v) % len(sites)) / 5) for s in range(len(sites))]
                for v in range(len(variables))]
    handles = {v: handle(v, index, [sites[(7 * i) % len(sites)], sites[(7 * i + 1) % len(sites)]],
                         0.9) for i, v in enumerate(variables[:5])}
    return {"index": index, "granularity": "neuron", "variables": variables, "sites": sites,
            "cost": coupling, "coupling": coupling, "kept": sites[:3],
            "kept_by_variable": {v: sites[:2] for v in variables}, "handles": handles,
            "plans": [], "runtime_s": 12.5, "forward_passes": 1_234_567,
            "timing": {"signatures_s": 8.0, "coupling_s": 1.5, "calibration_s": 3.0},
            "warnings": [],
            "diagnostics": {"variables": {v: {
                "entropy": 0.8, "best_site": sites[(7 * i) % len(sites)],
                "second_site": sites[(7 * i + 1) % len(sites)], "margin": 0.0012,
                "cost_margin": 0.01, "null_mass": None, "null_share_kept": 0.2}
                for i, v in enumerate(variables)}, "pairs": []},
            "label_permutation": {v: {"kept": sites[:2], "real_mass": 0.4, "control_mass": 0.1,
                                      "uniform_mass": 2 / len(sites), "max_mass": 1.0,
                                      "permutations": 16} for v in variables}}


def make_result(variables: int, sites: int, das: dict[str, Any] | None = None,
                plot_iia: float = 0.9) -> dict[str, Any]:
    names = [f"var_{v:02d}" for v in range(variables)]
    site_ids = [f"layer:{s // 64}/neuron:{s % 64}" for s in range(sites)]
    only = level(0, names, site_ids)
    for h in only["handles"].values():
        h["iia_test"] = iia(plot_iia)
    return {"variables": names, "levels": [only], "handles": only["handles"],
            "timing": {"total_s": 20.0 + (das or {}).get("runtime_s", 0.0), "das_s": 0.0},
            "forward_passes": 1_234_567, "net": {"path": "synthetic"}, "banks": {},
            "spec": SPEC, "device": "cpu", "max_rows": 4096, "das": das}


def make_das(mode: str, runtime_s: float, value: float) -> dict[str, Any]:
    run = {"site": "layer:0/das:4", "dim": 4, "variable": "var_00", "iia_calibration": value,
           "iia_test": iia(value), "epochs": 12, "loss": 0.1, "runtime_s": runtime_s,
           "init": "random", "low_rank": False}
    return {"mode": mode, "runs": [run, {**run, "dim": 2, "iia_test": iia(value - 0.2)}],
            "best": {"var_00": run}, "trainings": 2, "forward_passes": 99_000,
            "runtime_s": runtime_s}


def make_job(job_id: str, status: str = "succeeded", owner: str = "alice") -> dict[str, Any]:
    """A JobPublic record for a route-mocked job."""
    return {"id": job_id, "owner": owner, "status": status, "priority": 0, "attempt": 1,
            "created_at": "2026-01-01T10:00:00Z", "started_at": "2026-01-01T10:00:01Z",
            "finished_at": "2026-01-01T10:01:00Z", "cancel_requested": False,
            "current_level": None, "levels_done": 1,
            "progress": {"stage": None, "done": 0, "total": 0}, "queue_position": None,
            "eta_s": None, "error": None, "spec": SPEC}
