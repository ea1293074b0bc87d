"""The deployment files parse and agree with the code (no Docker engine runs here): every
PLOT_* variable the code reads is documented in .env.example and every one the files set is
a setting; every `plot ...` command they run parses with the CLI; ports, images, Ray
addresses and versions line up across docker-compose.yml, the images and deploy/k8s."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from api.cli import build_parser
from api.settings import PLACEHOLDER_SECRET, Settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
MANIFESTS = [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
             for doc in yaml.safe_load_all(path.read_text()) if doc]
SETTINGS = {f"PLOT_{name.upper()}" for name in Settings.model_fields}
PLOT_SERVICES = [name for name, service in SERVICES.items()
                 if str(service.get("image", "")).startswith("plot-")]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in MANIFESTS if doc["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload in deploy/k8s, the RayCluster's groups included."""
    for doc in MANIFESTS:
        spec = doc.get("spec", {})
        if "template" in spec:
            yield doc["metadata"]["name"], spec["template"]["spec"]
        if "headGroupSpec" in spec:
            yield "ray-head", spec["headGroupSpec"]["template"]["spec"]
            for group in spec["workerGroupSpecs"]:
                yield f"ray-{group['groupName']}", group["template"]["spec"]


def containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, pod in pod_specs():
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield f"{name}/{container['name']}", container


def parse_plot(argv: list[str], where: str) -> argparse.Namespace:
    """``plot ARGS`` parsed by the real CLI parser (a wrong command or option fails)."""
    assert argv[0] == "plot", where
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        raise AssertionError(f"{where}: `{shlex.join(argv)}` is not a plot command") from None


def check_command(argv: list[str], where: str) -> None:
    if argv[0] == "plot":
        parse_plot(argv, where)
    else:
        assert argv[0] in {"ray", "redis-server", "pg_isready", "redis-cli"}, (where, argv)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def code_env_reads() -> set[str]:
    """PLOT_* names read with os.environ / os.getenv anywhere in core/, workers/, api/."""
    names = set()
    for package in ("core", "workers", "api"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"(?:environ\.get|environ\[|getenv)\(?\s*[\"'](PLOT_\w+)",
                                    path.read_text()))
    return names


# --- configuration: one list of PLOT_* variables --------------------------------------------


def test_every_variable_the_code_reads_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*(PLOT_[A-Z0-9_]+)=",
                                (ROOT / ".env.example").read_text(), re.MULTILINE))
    read = SETTINGS | code_env_reads()
    assert {"PLOT_SERVER", "PLOT_API_KEY", "PLOT_CACHE_DIR"} <= read  # the scan finds reads
    assert read - documented == set(), "not in .env.example"
    assert documented - read == set(), "documented but read nowhere"


def test_the_example_secret_is_the_placeholder_a_deployment_refuses() -> None:
    active = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text()
                  .splitlines() if line and not line.startswith("#"))
    assert active == {"PLOT_DATABASE_PASSWORD": PLACEHOLDER_SECRET}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_every_variable_compose_and_k8s_set_is_a_setting() -> None:
    for name, service in SERVICES.items():
        for variable in service.get("environment", {}):
            if variable.startswith("PLOT_"):
                assert variable in SETTINGS, f"docker-compose.yml {name}: {variable}"
    (config,) = by_kind("ConfigMap")
    for where, container in containers():
        for item in container.get("env", []):
            if container["image"].startswith("plot-"):  # not Postgres's own POSTGRES_*
                assert item["name"] in SETTINGS, f"{where}: {item['name']}"
    assert set(config["data"]) <= SETTINGS
    for name in PLOT_SERVICES:  # configuration only through PLOT_* variables
        assert set(SERVICES[name]["environment"]) <= SETTINGS, name
        assert SERVICES[name].get("env_file") == ".env", name


def test_compose_and_k8s_settings_validate_as_a_deployment() -> None:
    (config,) = by_kind("ConfigMap")
    for source, values in [("deploy/k8s config", config["data"]),
                           *((f"docker-compose {n}", SERVICES[n]["environment"])
                             for n in ("api", "scheduler"))]:
        env = {k.removeprefix("PLOT_").lower(): v for k, v in values.items()}
        env["database_password"] = "a-real-secret"  # from .env / the plot-secrets Secret
        settings = Settings(**env)
        assert settings.allow_remote and settings.database_url, source
        assert settings.resolved_database_url.startswith("postgresql+psycopg://plot:a-real-")


# --- docker-compose -----------------------------------------------------------------------


def test_compose_has_the_topology_with_health_checks_and_a_migrate_step() -> None:
    assert {"postgres", "redis", "ray-head", "ray-gpu-worker", "migrate", "api",
            "scheduler"} <= set(SERVICES)
    for name in ("postgres", "redis", "ray-head", "api"):
        assert "healthcheck" in SERVICES[name], name
    assert parse_plot(SERVICES["migrate"]["command"], "migrate").action == "upgrade"
    for name in ("api", "scheduler"):
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}, name
    gpu = SERVICES["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


def test_compose_commands_files_and_volumes_exist() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name
        if "command" in service:
            check_command(service["command"], f"docker-compose.yml {name}")
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in COMPOSE["volumes"], f"{name}: {volume}"


def test_every_plot_service_mounts_nets_and_data_where_its_settings_point() -> None:
    for name in PLOT_SERVICES:
        env = SERVICES[name]["environment"]
        mounts = dict(v.split(":")[::-1] for v in SERVICES[name]["volumes"])
        assert mounts.get(env["PLOT_MODEL_ROOT"]) == "models", name
        assert mounts.get(env["PLOT_DATA_DIR"]) == "data", name


def test_compose_ports_and_ray_addresses_match_the_commands() -> None:
    api = SERVICES["api"]
    port = option(api["command"], "--port")
    assert f"{port}:{port}" in api["ports"] and f":{port}/readyz" in " ".join(
        api["healthcheck"]["test"])
    scheduler = SERVICES["scheduler"]
    assert scheduler["expose"] == [scheduler["environment"]["PLOT_METRICS_PORT"]]
    head = SERVICES["ray-head"]["command"]
    client = option(head, "--ray-client-server-port")
    assert scheduler["environment"]["PLOT_RAY_ADDRESS"] == f"ray://ray-head:{client}"
    assert f"('127.0.0.1', {client})" in " ".join(SERVICES["ray-head"]["healthcheck"]["test"])
    worker = SERVICES["ray-gpu-worker"]
    assert worker["environment"]["PLOT_RAY_ADDRESS"] == f"ray-head:{option(head, '--port')}"
    assert parse_plot(worker["command"], "ray-gpu-worker").num_gpus == 1


# --- deploy/k8s -----------------------------------------------------------------------------


def test_k8s_has_the_ray_cluster_the_deployments_and_services() -> None:
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in MANIFESTS}
    assert {("RayCluster", "plot"), ("Deployment", "plot-api"),
            ("Deployment", "plot-scheduler"), ("Service", "plot-api"),
            ("ConfigMap", "plot-config")} <= names
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml")
                                    if p.name != "kustomization.yaml")
    for where, container in containers():
        if "command" in container:
            check_command(container["command"], where)


def test_the_ray_cluster_has_a_gpu_worker_group_with_autoscaling_bounds() -> None:
    (cluster,) = by_kind("RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    (gpu,) = spec["workerGroupSpecs"]
    assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    assert gpu["maxReplicas"] > gpu["minReplicas"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    client = {p["name"]: p["containerPort"] for p in head["ports"]}["client"]
    assert spec["headGroupSpec"]["rayStartParams"]["ray-client-server-port"] == str(client)
    (config,) = by_kind("ConfigMap")
    assert config["data"]["PLOT_RAY_ADDRESS"] == (
        f"ray://{cluster['metadata']['name']}-head-svc:{client}")


def test_k8s_ports_and_probes_match_the_commands() -> None:
    workloads = dict(containers())
    api = workloads["plot-api/api"]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert str(ports["http"]) == option(api["command"], "--port")
    assert workloads["plot-api/migrate"]["command"] == ["plot", "db", "upgrade"]
    scheduler = workloads["plot-scheduler/scheduler"]
    env = {item["name"]: item["value"] for item in scheduler["env"]}
    assert {p["name"]: p["containerPort"] for p in scheduler["ports"]}["metrics"] == int(
        env["PLOT_METRICS_PORT"])
    services = {doc["metadata"]["name"]: doc for doc in by_kind("Service")}
    assert services["plot-api"]["spec"]["ports"][0]["targetPort"] == "http"
    assert services["plot-scheduler-metrics"]["spec"]["ports"][0]["targetPort"] == "metrics"
    for where, container in workloads.items():  # every PLOT pod reads the config and secret
        if container["image"].startswith("plot-"):
            refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {"plot-config", "plot-secrets"}, where


def test_every_pod_mounts_nets_and_data_where_the_config_points() -> None:
    (config,) = by_kind("ConfigMap")
    for name, pod in pod_specs():
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
        for container in pod["containers"]:
            if not container["image"].startswith("plot-"):
                continue
            mounts = {m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"]}
            assert mounts[config["data"]["PLOT_MODEL_ROOT"]] == "plot-models", name
            assert mounts[config["data"]["PLOT_DATA_DIR"]] == "plot-data", name


# --- images and versions ---------------------------------------------------------------------


def dockerfile(name: str) -> str:
    return (ROOT / "deploy" / name).read_text()


@pytest.mark.parametrize("name", ["Dockerfile.api", "Dockerfile.worker"])
def test_images_are_multi_stage_non_root_and_copy_what_exists(name: str) -> None:
    text = dockerfile(name)
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) >= 2
    final = text[text.rindex("\nFROM "):]
    user = re.findall(r"^USER (\S+)", final, re.MULTILINE)
    assert user and user[-1] not in {"root", "0"}
    for line in text.splitlines():
        match = re.match(r"COPY (?!--from)(.+) \S+$", line)
        if match:
            for source in match.group(1).split():
                assert (ROOT / source).exists(), f"{name}: COPY {source}"
    command = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert command
    check_command(yaml.safe_load(command.group(1)), name)


def test_both_images_share_one_pinned_python_and_the_tested_versions() -> None:
    bases = {re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile(n), re.MULTILINE).group(1)
             for n in ("Dockerfile.api", "Dockerfile.worker")}
    assert len(bases) == 1  # Ray wants the same Python, to the patch, on every node
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases.pop())
    lock = dict(line.split("==") for line in (ROOT / "deploy" / "requirements.lock")
                .read_text().splitlines() if line and not line.startswith("#"))
    torch = re.search(r"^torch==(\S+)$", (ROOT / "deploy" / "constraints.txt").read_text(),
                      re.MULTILINE).group(1)
    assert lock["torch"] == torch
    for name in ("Dockerfile.api", "Dockerfile.worker"):
        assert f'"torch=={torch}' in dockerfile(name)
        assert "-r deploy/requirements.lock" in dockerfile(name)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = project["dependencies"] + [req for extra in ("service", "hf")
                                        for req in project["optional-dependencies"][extra]]
    for text in direct:  # the lock pins every direct dependency within its range
        requirement = Requirement(text)
        pinned = lock.get(canonicalize_name(requirement.name))
        assert pinned and requirement.specifier.contains(pinned), text
    (cluster,) = by_kind("RayCluster")
    assert cluster["spec"]["rayVersion"] == lock["ray"]


def test_images_are_pinned_and_k8s_runs_the_images_compose_builds() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {service["image"] for service in SERVICES.values() if "build" in service}
    assert built == {f"plot-cpu:{version}", f"plot-cuda:{version}"}
    dockerfiles = {service["image"]: service["build"]["dockerfile"]
                   for service in SERVICES.values() if "build" in service}
    assert dockerfiles == {f"plot-cpu:{version}": "deploy/Dockerfile.api",
                           f"plot-cuda:{version}": "deploy/Dockerfile.worker"}
    tags = {i["name"]: i["newTag"] for i in
            yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]}
    for where, container in containers():
        image = container["image"]
        if image.startswith("plot-"):
            assert f"{image}:{tags[image]}" in built, where
        else:
            assert re.search(r":\d+(\.\d+)+", image), f"{where}: {image} is not pinned"
    for name, service in SERVICES.items():
        assert re.search(r":\d+(\.\d+)+", service["image"]), f"{name}: not pinned"


# --- docs and CI -----------------------------------------------------------------------------


def test_every_plot_command_in_the_deploy_readme_parses() -> None:
    commands, language = [], None
    for line in (ROOT / "deploy" / "README.md").read_text().splitlines():
        fence = line.strip()
        if fence.startswith("```"):
            language = None if language is not None else fence[3:] or "bash"
        elif language == "bash":
            commands.append(fence)
    found = 0
    for line in commands:  # `plot …` at the start (after VAR=value), after `--` or `exec X`
        match = re.search(r"(?:^(?:\w+=\S+\s+)*|--\s+|exec\s+\S+\s+)(plot\s[^|&;#>]*)", line)
        if match:
            argv = shlex.split(match.group(1).replace("$", "X"))
            parse_plot(argv, f"deploy/README.md: {line}")
            found += 1
    assert found >= 6


def test_ci_runs_no_docker() -> None:
    assert "docker" not in (ROOT / ".ci" / "run").read_text().lower()
