"""A tiny random Gemma-2 saved with a word-level tokenizer over the CopyColors words, built
here from transformers' config class (nothing downloaded): what a user registers as
``arch: hf``. The tokenizer puts ``<bos>`` before every text, as Gemma's does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from core.causal.mcqa import COLOURS, LETTERS, OBJECTS

WORDS = ["<pad>", "<bos>", "The", "the", "is", ".", "What", "color", "?", "Answer", ":",
         *LETTERS, *OBJECTS, *COLOURS]


def copycolors_tokenizer() -> Any:
    """Words and punctuation (newlines are spaces to it), ``<bos>`` first, ``<pad>`` 0."""
    import tokenizers
    import transformers

    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {word: i for i, word in enumerate(WORDS)}, unk_token="<pad>"))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    word_level.post_processor = tokenizers.processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="<pad>", unk_token="<pad>", bos_token="<bos>")


def save_copycolors_gemma2(directory: Path, max_len: int = 32, labels: list[str] | None = None,
                           seed: int = 0) -> Path:
    """A 2-block, width-32 Gemma-2 and its tokenizer in ``directory``, with a ``plot.json``
    reading the labels ``" A"``, ``" B"``, ``" C"`` (or ``labels``)."""
    import transformers

    config = transformers.Gemma2Config(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        sliding_window=8, query_pre_attn_scalar=8, pad_token_id=0, bos_token_id=1,
        eos_token_id=None)
    torch.manual_seed(seed)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    copycolors_tokenizer().save_pretrained(directory)
    plot = {"arch": "hf", "labels": labels or [" A", " B", " C"], "max_len": max_len}
    (directory / "plot.json").write_text(json.dumps(plot))
    return directory
