"""The word tokenizer saved with a net, and the single-token label check."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ModelLoadError, TaskError
from core.nets.tokenizer import WordTokenizer, label_token_ids, load_word_tokenizer


def test_word_tokenizer_pads_and_round_trips_through_its_file(tmp_path: Path) -> None:
    tokenizer = WordTokenizer(["<pad>", "red", "blue", "A"])
    assert tokenizer.encode("blue red", length=4, pad=0) == [2, 1, 0, 0]
    tokenizer.save(tmp_path)
    loaded = load_word_tokenizer(tmp_path)
    assert loaded is not None and loaded.vocab == tokenizer.vocab
    assert load_word_tokenizer(tmp_path / "missing") is None


@pytest.mark.parametrize(("text", "pad", "reason"), [
    ("green", 0, "'green' is not in the vocabulary"),
    ("red red red", 0, "3 tokens, the net takes at most 2"),
    ("red", None, "1 tokens, the net takes exactly 2"),
])
def test_word_tokenizer_refuses_what_it_cannot_encode(text: str, pad: int | None,
                                                     reason: str) -> None:
    with pytest.raises(TaskError, match=reason):
        WordTokenizer(["<pad>", "red"]).encode(text, length=2, pad=pad)


def test_labels_must_be_single_tokens() -> None:
    tokenizer = WordTokenizer(["<pad>", "A", "B", "light", "blue"])
    assert label_token_ids(tokenizer.tokenize, ["A", "B"]) == [1, 2]
    with pytest.raises(TaskError, match="'light blue' is 2 tokens") as error:
        label_token_ids(tokenizer.tokenize, ["A", "light blue"])
    assert error.value.where == "labels.1"
    with pytest.raises(TaskError, match="share a token"):
        label_token_ids(tokenizer.tokenize, ["A", " A"])


def test_a_malformed_tokenizer_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"type": "bpe"}')
    with pytest.raises(ModelLoadError) as error:
        load_word_tokenizer(tmp_path)
    assert error.value.where == "tokenizer.json"
