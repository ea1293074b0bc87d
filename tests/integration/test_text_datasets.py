"""Text datasets through the service: a tiny Gemma-2 registered with its tokenizer, MCQA
prompts uploaded as text, tokenized with its tokenizer (at upload, or when a job names the
net), and a job with the token-net default schedule run end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from api.client import ApiError, PlotClient
from core.causal.mcqa_text import CopyColorsPrompts
from core.net_text import hf_encoder
from tests.integration.conftest import Service
from tests.unit.core.nets.copycolors_net import copycolors_tokenizer, save_copycolors_gemma2

pytest.importorskip("transformers")
MAX_LEN = 32


def text_rows(pairs: int, named: bool = False) -> list[dict[str, Any]]:
    """MCQA pairs as JSONL rows of CopyColors prompt text; ``named``: labels by the net's
    label names ("A", "B", "C") instead of their indices."""
    tokenizer = copycolors_tokenizer()
    task = CopyColorsPrompts(1, 3, lambda t: list(tokenizer.encode(t, add_special_tokens=False)),
                             hf_encoder(tokenizer, MAX_LEN), MAX_LEN,
                             [tokenizer.convert_tokens_to_ids(x) for x in "ABC"])
    bank = task.sample_bank(pairs, torch.Generator().manual_seed(3))

    def text(ids: torch.Tensor) -> str:
        return str(tokenizer.decode(ids.tolist(), skip_special_tokens=True))

    def label(index: torch.Tensor) -> int | str:
        return "ABC"[int(index)] if named else int(index)

    return [{"base": text(bank.base[i]), "source": text(bank.source[i]),
             "base_label": label(bank.base_labels[i, 0]),
             "counterfactual_labels": {v: label(y[i, 0])
                                       for v, y in bank.counterfactual_labels.items()}}
            for i in range(bank.size)]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.mark.slow
def test_a_text_dataset_job_on_a_registered_gemma2_runs_end_to_end(
        service: Service, tmp_path: Path) -> None:
    root = service.settings.resolved_model_root
    directory = save_copycolors_gemma2(root / f"alice/{tmp_path.name}", MAX_LEN)
    rows = text_rows(36)
    too_long = {**rows[2], "source": rows[2]["source"] + " red" * MAX_LEN}
    with PlotClient(service.url, service.keys["alice"]) as client:
        net = client.register_model(str(directory.relative_to(root)))
        # uploaded for the net: tokenized now, a row over its max_len refused by its line
        with pytest.raises(ApiError) as refused:
            client.upload_dataset("long.jsonl", jsonl([*rows[:2], too_long]), model=net["id"])
        assert refused.value.where == "long.jsonl:3"
        assert "source:" in str(refused.value) and "at most 32" in str(refused.value)
        # uploaded alone: checked as text, tokenized when a job names the net
        late = client.upload_dataset("late.jsonl", jsonl([*rows[:2], too_long]))
        assert late["text"] and late["tokenized_for"] == []
        with pytest.raises(ApiError) as refused:
            client.submit({"model": {"id": net["id"]}, "task": {"dataset": late["id"]}})
        assert refused.value.where == "late.jsonl:3"
        named = text_rows(36, named=True)  # labels by name: "B", resolved by the net's labels
        checked = client.upload_dataset("checked.jsonl", jsonl(named), model=net["id"])
        assert checked["text"] and checked["tokenized_for"] == [net["id"]]
        with pytest.raises(ApiError) as refused:
            client.upload_dataset("z.jsonl", jsonl([{**named[0], "base_label": "Z"}]),
                                  model=net["id"])
        assert refused.value.where == "z.jsonl:1" and "not one of the net's labels" in str(
            refused.value)
        dataset = client.upload_dataset("prompts.jsonl", jsonl(named))
        assert dataset["tokenized_for"] == []
        spec: dict[str, Any] = {  # no levels: the token-net default schedule
            "model": {"id": net["id"]}, "task": {"dataset": dataset["id"]},
            "pairs": {"fit": 12, "calibration": 12, "test": 12},
            "coupling": {"epsilons": [0.1]},
            "calibration": {"top_k": [1], "strengths": [1.0]},
            "controls": {"random_net": False, "label_permutation": False,
                         "depth_check": False},
        }
        job = client.submit(spec)  # its rows are tokenized now, once for this net
        assert client.dataset(dataset["id"])["tokenized_for"] == [net["id"]]
        assert client.wait(job["id"], timeout_s=300)["status"] == "succeeded"
        result = client.result(job["id"])["result"]
    levels = result["levels"]
    assert [level["granularity"] for level in levels] == ["position", "layer", "pca"]
    shortest = min(len(copycolors_tokenizer()(r[side])["input_ids"])
                   for r in rows for side in ("base", "source"))
    positions = [site.split("/pos:")[1] for site in levels[0]["sites"]]
    assert "last" in positions and all(int(p) < shortest for p in positions if p != "last")
    # every prompt opens "<bos> The": the same activations on both sides of every pair
    assert "0" not in positions and "1" not in positions
    labels = levels[0]["site_labels"]
    assert set(labels) == set(levels[0]["sites"])
    assert labels["resid:0/pos:3"] == 'resid:0/pos:3 "is"'
    assert labels["resid:0/pos:2"] == "resid:0/pos:2"  # the object varies
    assert labels["resid:0/pos:last"] == 'resid:0/pos:last ":"'
    assert set(result["handles"]) == {"answer_pointer", "answer_token"}
