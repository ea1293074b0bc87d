"""POST /v1/jobs reads the named dataset once, and tokenizes a text dataset for the job's
net under the upload parsers' limiter (not in the default worker threads)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.db import datasets
from api.db.tables import Dataset
from tests.integration.conftest import Service
from tests.integration.test_datasets import heq_jsonl  # noqa: F401  (a fixture)

TEXT_ROWS = [{"base": f"the {word} is red", "source": f"the {word} is blue", "base_label": 0,
              "counterfactual_labels": {"color": 1}} for word in ("cat", "dog", "car")]


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch, api_only: Service) -> dict[str, list[Any]]:
    """The real dataset reads and text checks, each call recorded: the dataset id read, and
    the tokens the upload parsers' limiter lent while the text was checked."""
    calls: dict[str, list[Any]] = {"reads": [], "checks": []}
    read, check = datasets.get_dataset, datasets.check_text_for_net

    def reading(*args: Any) -> Dataset:
        calls["reads"].append(args[2])
        return read(*args)

    def checking(*args: Any) -> None:
        calls["checks"].append(api_only.app.state.body_parsers.borrowed_tokens)
        check(*args)

    monkeypatch.setattr(datasets, "get_dataset", reading)
    monkeypatch.setattr(datasets, "check_text_for_net", checking)
    return calls


def test_a_text_dataset_is_checked_under_the_upload_limiter_and_read_once(
        api_only: Service, spied: dict[str, list[Any]], heq_jsonl: bytes) -> None:  # noqa: F811
    with api_only.client("alice") as alice:
        text = alice.post("/v1/datasets", params={"name": "prompts.jsonl"},
                          content="".join(json.dumps(r) + "\n" for r in TEXT_ROWS).encode())
        assert text.status_code == 201 and text.json()["text"], text.text
        numbers = alice.post("/v1/datasets", params={"name": "heq.jsonl"}, content=heq_jsonl)
        assert numbers.status_code == 201, numbers.text
        spied["reads"].clear()
        # text without a net to tokenize it: refused by the check, which ran on a thread
        # of the parsers' limiter (one of its tokens lent: this request's)
        refused = alice.post("/v1/jobs", json={"task": {"dataset": text.json()["id"]}})
        assert refused.status_code == 422 and refused.json()["where"] == "model.id"
        assert spied["checks"] == [1]
        assert spied["reads"] == [text.json()["id"]]  # once for the whole submit
        spied["reads"].clear()
        job = alice.post("/v1/jobs", json={"task": {"dataset": numbers.json()["id"]}})
        assert job.status_code == 201, job.text
        assert spied["reads"] == [numbers.json()["id"]] and spied["checks"] == [1]
        # a dataset the caller does not have is still named
        missing = alice.post("/v1/jobs", json={"task": {"dataset": "nope"}})
        assert missing.status_code == 422 and missing.json()["where"] == "task.dataset"
