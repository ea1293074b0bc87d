"""On Ray the job driver holds no weights and no activations: with a GPT-2-small-shaped
(~124M parameters, ~500 MB in fp32) random model the driver's peak RSS stays below 1 GiB
while the intervention actor loads the net and traces the banks.

The driver runs in its own process (a fresh interpreter, so its peak RSS — ``VmHWM``, reset
at exec — is the job's alone), connected to the session's local Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import torch

from bench.scale import save_model
from core.causal.dataset import write_dataset
from core.causal.mcqa import VOCAB, MultipleChoiceColours

pytest.importorskip("transformers")  # the hf extra

pytestmark = pytest.mark.slow  # a 500 MB model saved, loaded by an actor, 3 small banks

MAX_LEN = 24
GIB = 2**30

DRIVER = """
import json, sys
from pathlib import Path
import ray
import torch
from bench.scale import peak_bytes
from core.job import JobContext, run_job
from core.spec import parse_job_spec
from workers.actor_backends import ActorBackends
from workers.cluster import make_pool

root, spec = Path(sys.argv[1]), json.loads(sys.argv[2])
ray.init(address=sys.argv[3], logging_level="ERROR")  # the test session's Ray
pool = make_pool(actors=1)
context = JobContext(root, root, root / "cache", "cpu")
with ActorBackends(pool, coupling_tasks=0).for_job() as factory:
    result = run_job(parse_job_spec(spec), context, backend_factory=factory)
held = ray.get(pool.actors[0].stats.remote())
peak = peak_bytes(torch.device("cpu"))  # VmHWM, as bench/scale.py reads it
print(json.dumps({"peak_rss": peak,
                  "levels": [level.granularity for level in result.levels],
                  "handles": sorted(result.handles), "micro_batches": held["micro_batches"]}))
"""


def test_the_driver_holds_no_weights_while_the_actor_runs_a_124m_model(
        ray_local: None, tmp_path: Path) -> None:
    # the bench's GPT-2-small shape (12 blocks, width 768, 12 heads, 124M parameters)
    net_dir = save_model("gpt2-small", tmp_path / "gpt2-small", len(VOCAB), max_len=MAX_LEN)
    assert (net_dir / "model.safetensors").stat().st_size > 450 * 2**20
    bank = MultipleChoiceColours(num_objects=1).sample_bank(
        24, torch.Generator().manual_seed(4), 0.5)
    write_dataset(tmp_path / "pairs.jsonl", bank, words=VOCAB)
    spec = {
        "model": {"path": "gpt2-small"}, "task": {"dataset": "pairs.jsonl"},
        "pairs": {"fit": 8, "calibration": 8, "test": 8},
        "levels": [{"granularity": "position", "positions": ["last", "3"], "keep": 1},
                   {"granularity": "pca", "band_size": 256, "scope": "per_variable"}],
        "calibration": {"top_k": [1], "strengths": [1.0]},
        "coupling": {"epsilons": [0.1]},
        "controls": {"random_net": False, "depth_check": False, "label_permutation": False},
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    address = ray.get_runtime_context().gcs_address
    done = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), json.dumps(spec), address],
                          capture_output=True, text=True, env=env, timeout=600,
                          cwd=Path(__file__).resolve().parents[3], check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["levels"] == ["position", "pca"]
    assert report["handles"] == ["answer_pointer", "answer_token"]
    assert report["micro_batches"] > 0  # the interventions ran on the actor
    # the weights alone are ~500 MB: a driver that loaded them, or traced, would be over
    assert report["peak_rss"] < GIB, f"driver peak RSS {report['peak_rss'] / 2**20:.0f} MiB"
