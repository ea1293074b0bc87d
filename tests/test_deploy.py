"""The deployment files parse and point at things that exist (no Docker engine runs here)."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import yaml

from api.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _plot_commands() -> dict[str, set[str]]:
    """``plot`` subcommand -> its sub-actions (empty when it has none)."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    out: dict[str, set[str]] = {}
    for name, sub in commands.choices.items():
        actions = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        out[name] = set(actions[0].choices) if actions else set()
    return out


def _check_command(argv: list[str], where: str) -> None:
    if argv[:2] == ["sh", "-c"]:
        for part in argv[2].split("&&"):
            _check_command(shlex.split(part), where)
        return
    if argv[0] == "plot":
        commands = _plot_commands()
        assert argv[1] in commands, f"{where}: no `plot {argv[1]}`"
        if commands[argv[1]]:
            assert argv[2] in commands[argv[1]], f"{where}: no `plot {argv[1]} {argv[2]}`"
    elif argv[0].startswith("deploy/"):
        assert (ROOT / argv[0]).is_file(), f"{where}: {argv[0]} is missing"
    else:
        assert argv[0] in {"ray", "redis-server", "python"}, f"{where}: unknown {argv[0]}"


def test_compose_has_the_services_and_their_files_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "ray-head", "ray-gpu-worker", "api"} <= set(services)
    for name, service in services.items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name
        if "command" in service:
            _check_command(service["command"], f"docker-compose.yml:{name}")
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], f"{name}: {volume}"
    gpu = services["ray-gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_compose_settings_are_settings_the_service_knows() -> None:
    from api.settings import Settings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {f"PLOT_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("PLOT_"):
                assert variable in known, f"{name}: {variable} is not a setting"
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            assert line.split("=")[0] in known, line


def test_dockerfiles_copy_only_what_exists() -> None:
    for dockerfile in (ROOT / "deploy").glob("Dockerfile.*"):
        for line in dockerfile.read_text().splitlines():
            match = re.match(r"COPY (.+) \S+$", line)
            if match:
                for source in match.group(1).split():
                    assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}"


def test_kuberay_manifests_parse_and_run_real_commands() -> None:
    kinds = []
    for manifest in (ROOT / "deploy" / "kuberay").glob("*.yaml"):
        for document in yaml.safe_load_all(manifest.read_text()):
            kinds.append(document["kind"])
            spec = document["spec"]
            templates = ([spec["template"]] if "template" in spec else
                         [spec["headGroupSpec"]["template"]]
                         + [g["template"] for g in spec.get("workerGroupSpecs", [])]
                         if "headGroupSpec" in spec else [])
            for template in templates:
                pod = template["spec"]
                for container in pod.get("initContainers", []) + pod["containers"]:
                    if "command" in container:
                        _check_command(container["command"], f"{manifest.name}:{container['name']}")
    assert {"RayCluster", "Deployment", "Service"} <= set(kinds)
