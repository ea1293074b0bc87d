"""A net's text side without its weights: how a prompt becomes its input ids.

The service tokenizes an uploaded text dataset when it is uploaded for a registered net, or
when a job names both, reading only the net's tokenizer and its ``max_len`` (never the
weights); a job tokenizes the same way through the loaded net (``text_encoder``), so a row
accepted here fits there.

A Hugging Face tokenizer encodes a prompt as the model was trained to read one: with the
tokens it puts *before* a text (Gemma's and Llama's ``<bos>``), never with those it puts
after one (an end-of-sequence token would become the last token the labels are read at).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError

Tokenize = Callable[[str], list[int]]
"""text -> the net's input ids, padded to its ``max_len`` (raises PlotError when it does
not fit)."""

HF_CONFIG_FILE = "plot.json"  # a local Hugging Face model's config for this project
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class NetText:
    """What a dataset needs of a net with a tokenizer.

    Attributes:
        encode: text -> ``max_len`` ids, right-padded.
        max_len: the net's input length.
        classes: how many output labels the net reads (a row's labels lie in [0, classes)).
        label_names: each class's name (a row may give a label by name).
    """

    encode: Tokenize
    max_len: int
    classes: int
    label_names: tuple[str, ...] = ()

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.max_len,)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (1, self.classes)


def hf_pad_id(tokenizer: Any) -> int:
    """The id a Hugging Face tokenizer pads with: its pad token, else its end-of-sequence
    token, else 0."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    return int(pad if pad is not None else 0)


def hf_prefix(tokenizer: Any) -> list[int]:
    """The special tokens ``tokenizer`` puts before a text (``[<bos>]`` for Gemma, Llama;
    ``[]`` for GPT-2), found by encoding a probe with and without special tokens."""
    probe = "a"
    plain = list(tokenizer.encode(probe, add_special_tokens=False))
    full = list(tokenizer.encode(probe, add_special_tokens=True))
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start]
    return []


def hf_encoder(tokenizer: Any, max_len: int) -> Tokenize:
    """``encode(text)``: the tokenizer's leading special tokens and the text's ids, padded
    with ``hf_pad_id`` to ``max_len``; picklable (it travels to a Ray job driver inside
    ``NetOutline``).

    Raises (from ``encode``):
        ModelLoadError: ``where`` ``text``: more than ``max_len`` tokens.
    """
    return PromptEncoder(tokenizer, max_len, tuple(hf_prefix(tokenizer)), hf_pad_id(tokenizer))


@dataclass(frozen=True)
class PromptEncoder:
    """A text as ``max_len`` token ids: ``prefix`` (the tokenizer's leading special tokens),
    the text's ids, then ``pad``."""

    tokenizer: Any
    max_len: int
    prefix: tuple[int, ...]
    pad: int

    def __call__(self, text: str) -> list[int]:
        ids = [*self.prefix, *self.tokenizer.encode(text, add_special_tokens=False)]
        if len(ids) > self.max_len:
            raise ModelLoadError(f"{len(ids)} tokens, the net takes at most {self.max_len} "
                                 "(plot.json max_len)", "text")
        return ids + [self.pad] * (self.max_len - len(ids))


def load_net_text(directory: Path) -> NetText | None:
    """The text side of the net in ``directory``: a local Hugging Face model (``plot.json``)
    or a built-in transformer saved with a ``tokenizer.json``; None for a net that reads no
    text. Only the tokenizer and the configs are read.

    Raises:
        ModelLoadError: a config or tokenizer that cannot be read (``where`` names the file).
    """
    if (directory / HF_CONFIG_FILE).is_file():
        return _hf_text(directory)
    config = _read_json(directory / CONFIG_FILE, CONFIG_FILE)
    if not isinstance(config, dict) or config.get("arch") != "transformer":
        return None
    from core.nets.tokenizer import load_word_tokenizer

    tokenizer = load_word_tokenizer(directory)
    if tokenizer is None:
        return None
    max_len, pad = int(config["max_len"]), config.get("pad_token_id")
    label_ids = config["label_token_ids"]
    return NetText(lambda text: tokenizer.encode(text, max_len, pad), max_len, len(label_ids),
                   tuple(tokenizer.vocab[i] for i in label_ids))


def _hf_text(directory: Path) -> NetText:
    config = _read_json(directory / HF_CONFIG_FILE, HF_CONFIG_FILE)
    labels = config.get("labels") if isinstance(config, dict) else None
    max_len = config.get("max_len") if isinstance(config, dict) else None
    if not isinstance(labels, list) or not labels:
        raise ModelLoadError("must be a non-empty list of label strings",
                             f"{HF_CONFIG_FILE}:labels")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ModelLoadError("must be a positive integer", f"{HF_CONFIG_FILE}:max_len")
    try:
        import transformers
    except ImportError as error:
        raise ModelLoadError("arch hf needs the transformers package",
                             f"{HF_CONFIG_FILE}:arch") from error
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(f"has no tokenizer that loads: {first}", directory.name) from None
    return NetText(hf_encoder(tokenizer, max_len), max_len, len(labels),
                   tuple(str(label) for label in labels))


def _read_json(path: Path, name: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"cannot be read: {error}", name) from None

