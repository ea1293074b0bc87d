"""Session-wide test options and shared nets: ``--device`` runs the tensor tests on cpu or
cuda; one engine cache per session, where the built-in HEQ task's default net is trained
once for the unit, integration and browser tests together."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from core.causal.registry import build_task
from core.job import task_default_net
from tests import early

# Fixtures that train a net: a test using one (directly or through another fixture) is slow.
TRAINED_NETS = frozenset({"heq_net", "adder_net", "mcqa_net"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for tensor tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run a test that trains a net through a fixture without the slow mark, so
    ``-m "not slow"`` never pays for training hidden in a setup."""
    unmarked = [item.nodeid for item in items
                if TRAINED_NETS & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("these tests train a net (fixtures "
                                f"{sorted(TRAINED_NETS)}) and need @pytest.mark.slow: "
                                + ", ".join(unmarked))


def pytest_collection_finish(session: pytest.Session) -> None:
    early.start_all(session)  # mypy and the like: beside the tests, not after them


def pytest_unconfigure(config: pytest.Config) -> None:
    early.stop_all(config)


@pytest.fixture
def early_process(request: pytest.FixtureRequest) -> subprocess.CompletedProcess[str]:
    """The finished process of the test's ``early_process`` mark (started at collection)."""
    return early.result(request.node, timeout_s=900)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's one engine cache (``cache_dir`` of every engine and service under
    test): a built-in task's default net is trained into it at most once."""
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(scope="session")
def heq_net(engine_cache: Path) -> Path:
    """The HEQ task's default net (seed 0) in the session's engine cache: the directory a
    HEQ job without ``model.path`` resolves to. A test that runs such a job asks for it, so
    the net is trained in that test's setup rather than inside its job's timeout."""
    return task_default_net(build_task("hierarchical_equality", {}), engine_cache)
