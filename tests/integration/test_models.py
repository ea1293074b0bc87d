"""Registered nets and uploaded datasets: the service resolves their ids into the engine's
paths, and a job over them runs to a result that names the same net."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.client import PlotClient
from core.causal.dataset import write_dataset
from core.causal.registry import build_task, make_banks
from core.nets.io import net_digest, save_net
from core.nets.registry import build_net
from core.spec import PairsSpec
from tests.integration.conftest import Service


def save_heq_net(root: Path, name: str) -> Path:
    task = build_task("hierarchical_equality")
    return save_net(build_net(task.default_net_config()), root / name)


def heq_dataset(path: Path, pairs: int) -> bytes:
    banks = make_banks(build_task("hierarchical_equality"),
                       PairsSpec.model_validate({"fit": pairs, "calibration": 2, "test": 2}))
    write_dataset(path, banks.fit)
    return path.read_bytes()


def test_a_registered_net_records_its_config_and_digest(api_only: Service) -> None:
    root = api_only.settings.resolved_model_root
    directory = save_heq_net(root, "nets/heq")
    with api_only.client("alice") as alice:
        response = alice.post("/v1/models", json={"path": "nets/heq"})
        assert response.status_code == 201, response.text
        net = response.json()
        assert net["path"] == "nets/heq" and net["sha256"] == net_digest(directory)
        assert net["config"]["arch"] == "mlp"
        assert alice.get(f"/v1/models/{net['id']}").json() == net
    with api_only.client("bob") as bob:
        assert bob.get(f"/v1/models/{net['id']}").status_code == 404
        refused = bob.post("/v1/jobs", json={"model": {"id": net["id"]},
                                             "task": {"builtin": "hierarchical_equality"}})
        assert refused.status_code == 422 and refused.json()["where"] == "model.id"


def test_a_broken_net_directory_is_refused_naming_the_file(api_only: Service) -> None:
    root = api_only.settings.resolved_model_root
    directory = save_heq_net(root, "broken")
    (directory / "model.safetensors").write_bytes(b"not safetensors")
    with api_only.client() as client:
        response = client.post("/v1/models", json={"path": "broken"})
    assert response.status_code == 422
    assert response.json()["type"] == "ModelLoadError"


def test_a_directory_of_links_out_of_the_root_is_refused_naming_the_file(
    api_only: Service, tmp_path: Path
) -> None:
    root = api_only.settings.resolved_model_root
    outside = save_heq_net(tmp_path, "elsewhere")
    linked = root / "linked"
    linked.mkdir(parents=True)
    for name in ("plot.json", "config.json", "model.safetensors", "tokenizer.json"):
        (outside / name).touch()
        (linked / name).symlink_to(outside / name)
    with api_only.client() as client:
        response = client.post("/v1/models", json={"path": "linked"})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["message"] == "links outside the model root"
    assert error["where"] in {"plot.json", "config.json", "model.safetensors",
                              "tokenizer.json"}
    assert str(tmp_path) not in response.text


@pytest.mark.parametrize("path", ["nets/\x00heq", "a" * 1000, "a/" * 500 + "b",
                                  "x" * 2000])
def test_nul_bytes_and_over_long_paths_are_refused_naming_the_field(
    api_only: Service, path: str
) -> None:
    with api_only.client() as client:
        response = client.post("/v1/models", json={"path": path})
    assert response.status_code == 422, response.text
    assert response.json()["where"] == "path"


def test_errors_name_paths_relative_to_the_model_root(api_only: Service) -> None:
    root = api_only.settings.resolved_model_root
    directory = save_heq_net(root, "nets/no-weights")
    (directory / "model.safetensors").unlink()
    with api_only.client() as client:
        response = client.post("/v1/models", json={"path": "nets/no-weights"})
    assert response.status_code == 422
    assert response.json()["where"] == "model.safetensors"
    assert str(root) not in response.text


@pytest.mark.slow
def test_a_job_over_a_registered_net_and_an_uploaded_dataset_succeeds(
    service: Service, tmp_path: Path
) -> None:
    root = service.settings.resolved_model_root
    directory = save_heq_net(root, f"alice/{tmp_path.name}")
    data = heq_dataset(tmp_path / "rows.jsonl", 90)
    with PlotClient(service.url, service.keys["alice"]) as client:
        net = client.register_model(str(directory.relative_to(root)))
        dataset = client.upload_dataset("rows.jsonl", data)
        spec: dict[str, Any] = {
            "model": {"id": net["id"]}, "task": {"dataset": dataset["id"]},
            "pairs": {"fit": 30, "calibration": 30, "test": 30},
            "levels": [{"granularity": "neuron"}], "coupling": {"epsilons": [0.03]},
            "calibration": {"top_k": [1], "strengths": [1.0]},
        }
        job = client.submit(spec)
        assert client.wait(job["id"], timeout_s=300)["status"] == "succeeded"
        result = client.result(job["id"])["result"]
    assert result["net"]["digest"] == net["sha256"]
    assert result["banks"]["fit"]["pairs"] == 30
    assert set(result["handles"]) == set(dataset["variables"])
