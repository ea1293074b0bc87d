"""MCQA as CopyColors prompts for a Hugging Face tokenizer: the prompts, their ids, the
answer letters resolved through the tokenizer, and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from core.causal.mcqa import COLOURS, LETTERS, OBJECTS
from core.causal.mcqa_text import CopyColorsPrompts
from core.errors import TaskError
from core.job import JobContext, run_job
from core.net_text import hf_encoder
from core.spec import parse_job_spec
from tests.unit.core.nets.copycolors_net import copycolors_tokenizer, save_copycolors_gemma2

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return copycolors_tokenizer()


def plain(tokenizer: Any) -> Any:
    return lambda text: list(tokenizer.encode(text, add_special_tokens=False))


def task(tokenizer: Any, max_len: int = 32, **kwargs: Any) -> CopyColorsPrompts:
    labels = [tokenizer.convert_tokens_to_ids(letter) for letter in "ABC"]
    return CopyColorsPrompts(1, 3, plain(tokenizer), hf_encoder(tokenizer, max_len), max_len,
                             kwargs.get("net_label_ids", labels))


def test_pairs_are_copycolors_prompts_in_the_tokenizers_ids(tokenizer: Any) -> None:
    mcqa = task(tokenizer)
    values = {"o0": OBJECTS.index("sky"), "c0": COLOURS.index("red"), "q": 0,
              "x0": COLOURS.index("green"), "x1": COLOURS.index("red"),
              "x2": COLOURS.index("blue")}
    assert mcqa.prompt(values) == ("The sky is red. What color is the sky?\nA. green\nB. red"
                                   "\nC. blue\nAnswer:")
    bank = mcqa.sample_bank(12, torch.Generator().manual_seed(0))
    assert bank.base.shape == (12, 32) and bank.base.dtype == torch.long
    for row in range(3):
        ids = [i for i in bank.base[row].tolist() if i != tokenizer.pad_token_id]
        text = tokenizer.decode(ids)
        assert ids == tokenizer(text.removeprefix("<bos> "))["input_ids"]  # <bos> first
        # <bos> The <x> is <colour> . What color is the <x> ? A . <c> B . <c> C . <c> ...
        words = text.split()
        assert words[:2] == ["<bos>", "The"] and words[6:10] == ["What", "color", "is", "the"]
        options = {words[i + 2]: words[i] for i in range(12, 21, 3)}
        assert LETTERS.index(options[words[4]]) == int(bank.base_labels[row, 0])


def test_paper_banks_are_prompts_in_the_tokenizers_ids_too(tokenizer: Any) -> None:
    bank = task(tokenizer).sample_paper_bank(10, torch.Generator().manual_seed(0))
    assert bank.base.shape == bank.source.shape == (10, 32) and bank.base.dtype == torch.long
    assert all(tokenizer.decode(row.tolist()).startswith("<bos> The") for row in bank.base)


def test_a_letter_the_tokenizer_splits_is_refused() -> None:
    def characters(text: str) -> list[int]:
        return [ord(c) for c in text]

    with pytest.raises(TaskError, match=r"letters \[' A', ' B', ' C'\]: label ' A' is 2 "
                       "tokens") as error:
        CopyColorsPrompts(1, 3, characters, lambda text: [0] * 32, 32, [65, 66, 67])
    assert error.value.where == "model"


def test_a_model_that_reads_other_labels_is_told_which_to_read(tokenizer: Any) -> None:
    with pytest.raises(TaskError, match=r'set its plot.json "labels" to \[" A", " B", " C"\]'):
        task(tokenizer, net_label_ids=[1, 2, 3])


def test_a_prompt_over_the_models_max_len_is_refused(tokenizer: Any) -> None:
    with pytest.raises(TaskError, match=r"does not fit the model: 2[0-9] tokens, the net takes "
                       r"at most 12"):
        task(tokenizer, max_len=12).sample_bank(4, torch.Generator().manual_seed(0))


README = Path(__file__).parents[4] / "README.md"


def readme_spec() -> dict[str, Any]:
    """The YAML block after ``<!-- mcqa-hf-spec -->`` in the README."""
    text = README.read_text(encoding="utf-8").split("<!-- mcqa-hf-spec -->", 1)[1]
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec: dict[str, Any] = yaml.safe_load(block)
    return spec


@pytest.mark.slow
def test_the_readme_mcqa_spec_runs_as_written_on_a_tiny_gemma2(tmp_path: Path) -> None:
    spec = readme_spec()
    save_copycolors_gemma2(tmp_path / spec["model"]["path"])
    result = run_job(parse_job_spec(spec),
                     JobContext(tmp_path, tmp_path, tmp_path / "cache", "cpu"))
    assert [level.granularity for level in result.levels] == ["position", "layer", "pca"]
    assert set(result.handles) == {"answer_pointer", "answer_token"}
    assert result.levels[0].site_labels["resid:0/pos:last"] == 'resid:0/pos:last ":"'
    # the model's label logits are the letters, read through its tokenizer
    assert result.net["config"]["labels"] == [" A", " B", " C"]
