"""The MCQA task as the paper's CopyColors prompts, for a Hugging Face model's tokenizer.

The causal model, its variables and its pairs are ``core.causal.mcqa``'s; only the prompt
changes, to the CopyColors format of the paper's third experiment (the MIB benchmark's
MCQA), read by the model's own tokenizer::

    The apple is red. What color is the apple?
    A. green
    B. red
    C. blue
    Answer:                                          -> " B"

The answer labels are the letters after a space (``" A"``, ``" B"``, ...), each resolved to
one token of the model's tokenizer; the model's ``plot.json`` must read exactly those labels
(its output is their logits), and a letter its tokenizer splits is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from core.causal.bank import PairBank
from core.causal.mcqa import COLOURS, LETTERS, OBJECTS, MultipleChoiceColours
from core.errors import PlotError, TaskError
from core.nets.tokenizer import label_token_ids

Tokenize = Callable[[str], list[int]]


def copycolors_labels(num_options: int) -> list[str]:
    """The answer labels of ``num_options`` options: ``[" A", " B", ...]``."""
    return [f" {letter}" for letter in LETTERS[:num_options]]


class CopyColorsPrompts(MultipleChoiceColours):
    """MCQA (``core.causal.mcqa``) as CopyColors text prompts tokenized for one model.

    Args:
        num_objects, num_options: as ``MultipleChoiceColours``.
        tokenize: text -> the model's ids, no special tokens, no padding (for the labels).
        encode: text -> the model's ``max_len`` input ids (its leading special tokens,
            padding); raises ``PlotError`` for a prompt over ``max_len``.
        max_len: the model's input length.
        net_label_ids: the token ids the model reads its output labels at.

    Raises:
        TaskError: a letter that is not one token of the tokenizer, or labels the model
            does not read (``where`` ``model``: what to put in its ``plot.json``).
    """

    def __init__(self, num_objects: int, num_options: int, tokenize: Tokenize,
                 encode: Tokenize, max_len: int, net_label_ids: list[int]) -> None:
        super().__init__(num_objects, num_options)
        self.labels = copycolors_labels(num_options)
        try:
            self.label_ids = label_token_ids(tokenize, self.labels)
        except TaskError as error:
            raise TaskError(f"mcqa answers with the letters {self.labels}: {error.message}",
                            "model") from None
        if self.label_ids != list(net_label_ids):
            raise TaskError(f"mcqa answers with the tokens {self.labels} (ids "
                            f"{self.label_ids}) but the model reads labels with ids "
                            f"{list(net_label_ids)}: set its plot.json \"labels\" to "
                            f"{json.dumps(self.labels)}", "model")
        self.text_encode = encode
        self.length = max_len
        self.input_shape = (max_len,)
        self._ids: dict[str, list[int]] = {}  # prompt -> ids: pairs repeat prompts

    def prompt(self, values: Mapping[str, int]) -> str:
        facts = " ".join(f"The {OBJECTS[values[f'o{k}']]} is {COLOURS[values[f'c{k}']]}."
                         for k in range(self.num_objects))
        query = OBJECTS[values[f"o{values['q']}"]]
        options = "".join(f"\n{LETTERS[j]}. {COLOURS[values[f'x{j}']]}"
                          for j in range(self.num_options))
        return f"{facts} What color is the {query}?{options}\nAnswer:"

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """(B, max_len) long ids of the prompts of a batch of causal inputs.

        Raises:
            TaskError: a prompt longer than the model's ``max_len``.
        """
        rows = []
        for prompt in self.prompts(inputs):
            ids = self._ids.get(prompt)
            if ids is None:
                try:
                    ids = self._ids[prompt] = self.text_encode(prompt)
                except PlotError as error:
                    raise TaskError(f"an mcqa prompt does not fit the model: {error.message}: "
                                    f"{prompt!r}", "model") from None
            rows.append(ids)
        return torch.tensor(rows, dtype=torch.long)

    def encode_candidates(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """(B, K) the causal inputs themselves: thousands of candidate pairs are drawn for
        a bank, and only the kept ones are written and tokenized (``sample_bank``)."""
        return torch.stack([inputs[name] for name in self._input_names()], dim=1)

    def sample_bank(self, n: int, generator: torch.Generator,
                    changed_share: float = 0.5) -> PairBank:
        return self.encode_kept(super().sample_bank(n, generator, changed_share))

    def encode_kept(self, bank: PairBank) -> PairBank:
        """The kept pairs' prompts tokenized (their inputs were the causal values)."""
        names = self._input_names()
        return replace(bank, base=self.encode(dict(zip(names, bank.base.T, strict=True))),
                       source=self.encode(dict(zip(names, bank.source.T, strict=True))))

    def _input_names(self) -> list[str]:
        return [*(f"o{k}" for k in range(self.num_objects)),
                *(f"c{k}" for k in range(self.num_objects)), "q",
                *(f"x{j}" for j in range(self.num_options))]

    def named_positions(self) -> dict[str, dict[str, int]]:
        return {}  # token-id positions belong to the model's plot.json

    def default_net_config(self) -> dict[str, Any]:
        raise TaskError("CopyColors prompts run on a registered model; give model.id or "
                        "model.path", "model")

    def default_levels(self) -> list[dict[str, Any]]:
        # the token-net schedule over the positions the prompts fill (core.token_positions)
        from core.token_levels import TOKEN_NET_LEVELS

        return [dict(level) for level in TOKEN_NET_LEVELS]
