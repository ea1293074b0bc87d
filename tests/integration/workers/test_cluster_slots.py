"""Scheduler slots follow the cluster's GPUs: one per GPU that is free or held by the pool's
actors, re-read each time (a Ray with logical GPUs, in a subprocess of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

SCRIPT = """
import json, ray
from workers import cluster

ray.init(address="local", num_cpus=4, num_gpus=3, include_dashboard=False,
         log_to_driver=False)
pool = cluster.make_pool(actors=1)          # one GPU actor (logical GPUs: never used here)
ray.get(pool.actors[0].ping.remote())
slots = cluster.gpu_slots(pool, fallback=2)
seen = {"held": pool.gpus, "with_two_free": slots()}

class Tenant:                               # another user's work takes a GPU
    def ping(self):
        return 1

tenant = ray.remote(num_gpus=1)(Tenant).remote()
ray.get(tenant.ping.remote())
seen["with_one_free"] = slots()
ray.kill(tenant)
print(json.dumps(seen))
"""


def test_slots_are_the_free_gpus_plus_the_pools_own() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen == {"held": 1.0, "with_two_free": 3, "with_one_free": 2}
