"""MCQA copy colours: prompts, labels and counterfactual families that separate the variables."""

from __future__ import annotations

import pytest
import torch

from core.causal.mcqa import COLOURS, LETTERS, MultipleChoiceColours
from core.causal.registry import build_task
from core.errors import TaskError


def test_encoded_ids_are_the_tokenized_prompts_and_labels_point_at_the_colour() -> None:
    task = MultipleChoiceColours(num_objects=2, num_options=3)  # two facts: the query matters
    inputs = task.sample_inputs(50, torch.Generator().manual_seed(0))
    ids = task.encode(inputs)
    assert ids.shape == (50, *task.input_shape) and ids.dtype == torch.long
    labels = task.causal.output_labels(task.causal.run(inputs))[:, 0]
    for prompt, row, label in zip(task.prompts(inputs), ids.tolist(), labels.tolist(),
                                  strict=True):
        assert task.tokenizer.tokenize(prompt) == row
        words = prompt.split()
        queried = words[words.index("?") - 1]
        colour = words[words.index(queried) + 2]  # "<object> is <colour>"
        assert words[words.index(LETTERS[label]) + 1] == colour
        assert colour in COLOURS


def test_counterfactuals_of_the_two_variables_follow_their_definitions() -> None:
    task = MultipleChoiceColours()
    bank = task.sample_bank(400, torch.Generator().manual_seed(1), 0.5)
    base_words = [task.tokenizer.vocab[i] for i in bank.base[0].tolist()]
    assert base_words[-2:] == ["answer", ":"]
    for i in range(40):
        base = [task.tokenizer.vocab[t] for t in bank.base[i].tolist()]
        source = [task.tokenizer.vocab[t] for t in bank.source[i].tolist()]
        options_b = [base[base.index(letter) + 1] for letter in task.labels]
        options_s = [source[source.index(letter) + 1] for letter in task.labels]
        asked = source[source.index(source[source.index("?") - 1]) + 2]
        assert sorted(options_b) == sorted(options_s)
        assert int(bank.counterfactual_labels["answer_token"][i, 0]) == options_b.index(asked)
        assert int(bank.counterfactual_labels["answer_pointer"][i, 0]) == options_s.index(asked)


def test_the_families_separate_the_variables_and_hit_the_change_share() -> None:
    task = MultipleChoiceColours()
    bank = task.sample_bank(1000, torch.Generator().manual_seed(2), 0.5)
    rates = bank.change_rates()
    assert rates == pytest.approx({"answer_pointer": 0.5, "answer_token": 0.5}, abs=0.02)
    differ = (bank.counterfactual_labels["answer_pointer"]
              != bank.counterfactual_labels["answer_token"]).float().mean()
    assert float(differ) > 0.4


def test_mcqa_is_a_registered_task_with_checked_params() -> None:
    task = build_task("mcqa", {"num_options": 4})
    assert task.output_shape == (1, 4) and task.variables == ("answer_pointer", "answer_token")
    config = task.default_net_config()
    assert config["arch"] == "transformer" and config["max_len"] == task.input_shape[0]
    with pytest.raises(TaskError) as error:
        build_task("mcqa", {"num_options": 5})
    assert error.value.where == "task.params.num_options"
