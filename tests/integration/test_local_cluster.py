"""The deployment's topology run for real without containers: deploy/local-cluster.sh starts
a Ray head and a second Ray node, migrates, starts the API and `plot scheduler` (a Ray
Client driver) on the real Postgres and Redis, submits a job and follows it to the end; on
exit it stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REDIS_URL, TINY_SPEC, free_port
from workers.events import RedisStreamBus

ROOT = Path(__file__).resolve().parents[2]


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def is_listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_the_local_cluster_runs_a_job_across_two_ray_nodes_and_cleans_up(
        postgres_url: str, engine_cache: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    # a small job: the test is about the topology (two nodes, Ray Client, clean-up)
    spec.write_text(yaml.safe_dump({**TINY_SPEC, "levels": [{"granularity": "layer"}],
                                    "pairs": {"fit": 50, "calibration": 50, "test": 50}}))
    prefix = f"plot-local-{uuid.uuid4().hex[:8]}"
    ports = {name: str(free_port()) for name in
             ("RAY_PORT", "RAY_CLIENT_PORT", "DASHBOARD_PORT", "API_PORT", "METRICS_PORT")}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PLOT_", "RAY_"))},
           **ports, "VENV": str(Path(sys.executable).parent.parent), "SPEC": str(spec),
           "PLOT_DATABASE_URL": postgres_url, "PLOT_REDIS_URL": REDIS_URL,
           "PLOT_REDIS_PREFIX": prefix, "PLOT_CACHE_DIR": str(engine_cache)}
    script = subprocess.Popen(["bash", "deploy/local-cluster.sh"], cwd=ROOT, env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        out, _ = script.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        script.send_signal(signal.SIGTERM)  # its trap stops what it started
        out, _ = script.communicate(timeout=60)
        raise AssertionError(f"the local cluster did not finish:\n{out}") from None
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
        bus = RedisStreamBus(REDIS_URL, prefix)
        bus.delete_prefix()
        bus.close()
    assert script.returncode == 0, out
    assert "ray: 2 nodes alive" in out
    job_id = re.search(r"^job ([0-9a-f]{32}) queued", out, re.MULTILINE)
    assert job_id, out
    assert f"status: {job_id.group(1)} succeeded attempt 1" in out
    assert re.search(r"^WX: [a-z_ ]+.*; sites=\['layer:\d'", out, re.MULTILINE), out
    nodes = set(re.findall(r"node_id: (\w+)", out))
    assert len(nodes) == 2, out  # the two actors ran on the two nodes
    assert 'scheduler plot_jobs_finished_total{status="succeeded"} 1.0' in out
    interventions = re.search(r"scheduler plot_interventions_total (\S+)", out)
    assert interventions and float(interventions.group(1)) > 0
    logs = re.search(rf"logs: (\d+) JSON lines of the scheduler carry job_id {job_id.group(1)}",
                     out)
    assert logs and int(logs.group(1)) >= 3, out
    pids = [int(p) for p in re.search(r"^pids: ([\d ]+)$", out, re.MULTILINE).group(1).split()]
    assert re.search(r"^stopped: " + " ".join(map(str, pids)), out, re.MULTILINE)
    assert not [pid for pid in pids if is_alive(pid)]
    assert not [name for name, port in ports.items() if is_listening(int(port))]
