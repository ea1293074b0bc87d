"""A word-level tokenizer saved next to a net (``tokenizer.json``), and the label-token check.

Text is split on whitespace; every word must be in the vocabulary. Label sets must be
single tokens: a label that a tokenizer splits into several tokens has no one logit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from core.errors import ModelLoadError, TaskError

TOKENIZER_FILE = "tokenizer.json"


class WordTokenizer:
    """Whitespace-split words to ids by position in ``vocab``.

    Example:
        >>> WordTokenizer(["<pad>", "a", "b"]).encode("b a", length=3, pad=0)
        [2, 1, 0]
    """

    def __init__(self, vocab: Sequence[str]) -> None:
        if len(set(vocab)) != len(vocab):
            raise ModelLoadError("the vocabulary repeats a word", TOKENIZER_FILE)
        self.vocab = list(vocab)
        self.ids = {word: i for i, word in enumerate(self.vocab)}

    def tokenize(self, text: str) -> list[int]:
        """The ids of ``text``'s words, unpadded.

        Raises:
            TaskError: a word is not in the vocabulary.
        """
        unknown = [word for word in text.split() if word not in self.ids]
        if unknown:
            raise TaskError(f"word {unknown[0]!r} is not in the vocabulary", "text")
        return [self.ids[word] for word in text.split()]

    def encode(self, text: str, length: int, pad: int | None) -> list[int]:
        """``text``'s ids right-padded with ``pad`` to ``length``.

        Raises:
            TaskError: an unknown word, a text longer than ``length``, or a shorter text
                when the net is never padded (``pad`` None).
        """
        ids = self.tokenize(text)
        if len(ids) > length or (pad is None and len(ids) != length):
            need = f"at most {length}" if pad is not None else f"exactly {length}"
            raise TaskError(f"{len(ids)} tokens, the net takes {need}", "text")
        return ids + [pad if pad is not None else 0] * (length - len(ids))

    def save(self, directory: Path | str) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.write_text(json.dumps({"type": "word", "vocab": self.vocab}, indent=1) + "\n")
        return path


def load_word_tokenizer(directory: Path) -> WordTokenizer | None:
    """The tokenizer saved in ``directory``, or None when it has none.

    Raises:
        ModelLoadError: ``tokenizer.json`` is not a word tokenizer.
    """
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"is not valid JSON: {error}", TOKENIZER_FILE) from error
    vocab = data.get("vocab") if isinstance(data, dict) else None
    if data.get("type") != "word" or not isinstance(vocab, list) \
            or not all(isinstance(w, str) for w in vocab):
        raise ModelLoadError('expected {"type": "word", "vocab": [words]}', TOKENIZER_FILE)
    return WordTokenizer(vocab)


def label_token_ids(tokenize: Callable[[str], list[int]], labels: Sequence[str]) -> list[int]:
    """The one token id of each label, refusing a label that is not exactly one token.

    Args:
        tokenize: text -> ids without special tokens or padding.
        labels: the label strings (``" A"`` for a BPE tokenizer, ``"A"`` for a word one).

    Raises:
        TaskError: ``where`` is ``labels.<i>``: the label is several tokens or none.
    """
    ids = []
    for i, label in enumerate(labels):
        tokens = tokenize(label)
        if len(tokens) != 1:
            raise TaskError(f"label {label!r} is {len(tokens)} tokens {tokens}; every label "
                            "must be exactly one token", f"labels.{i}")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise TaskError("two labels share a token", "labels")
    return ids
