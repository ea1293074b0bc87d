"""Which positions of a token net are sites for a bank, and the token each one shows.

A token net names every position up to ``max_len`` (``0..T-1``, ``last``, its named
positions), but a bank of prompts only fills some of them. Read from the fit bank's base and
source token ids (every pair, both sides):

- **padding is never a site**: an index position is a site only where it holds a real token
  in every prompt (positions past the shortest prompt are reached through ``last`` and the
  named positions);
- **no-op positions are not sites**: an index position where every pair's base and source
  share the whole prefix up to it holds the same activation in both runs (the nets are
  causal), so an interchange there changes nothing;
- **one token, one site**: labels that fall on the same token in every prompt (``pos:23``
  and ``pos:last`` when every prompt is 24 tokens long) are one site, named by the first of
  ``last``, the named positions, the index;
- **labels show the token**: a position is labelled with its token (``resid:3/pos:7
  "Paris"``) when at least ``TOKEN_SHARE`` of the prompts hold that same token there, and
  with the position only otherwise (``last`` over prompts of different lengths, an index
  where prompts differ).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from core.nets.base import InterventableNet
from core.nets.tokens import LAST, resolve_positions
from core.sites import Site, parse_token_location

TOKEN_SHARE = 0.9  # share of the bank's prompts that must agree for a label to show a token


@dataclass(frozen=True)
class BankPositions:
    """The positions of a token net that are sites for one bank, and their tokens.

    Attributes:
        sites: the position labels that are sites, in the net's label order.
        tokens: position label -> the display text of the token it holds in (most of) the
            bank; labels whose token varies are absent.
    """

    sites: tuple[str, ...]
    tokens: dict[str, str]

    def site_labels(self, sites: Sequence[Site]) -> dict[str, str]:
        """Site id -> display label for every site at a token location: the id, then the
        token in quotes when its position shows one (``resid:3/pos:7 "Paris"``)."""
        out = {}
        for site in sites:
            parsed = parse_token_location(site.location)
            if parsed is None:
                continue
            token = self.tokens.get(parsed.position)
            out[site.id] = site.id if token is None else f"{site.id} {token}"
        return out


def token_decoder(net: InterventableNet) -> Callable[[int], str] | None:
    """``decode(id) -> text`` from the net's tokenizer (a Hugging Face or a word one), or
    None when the net has none."""
    tokenizer: Any = getattr(net, "tokenizer", None)
    if tokenizer is None:
        return None
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, list):  # core.nets.tokenizer.WordTokenizer
        return lambda i: vocab[i] if 0 <= i < len(vocab) else f"#{i}"
    if hasattr(tokenizer, "decode"):
        return lambda i: str(tokenizer.decode([i]))
    return None


def display_token(text: str) -> str:
    """A token as a label shows it: quoted, JSON-escaped, surrounding spaces cut unless it
    is only whitespace (``"Paris"``, ``"\\n"``)."""
    return json.dumps(text.strip() or text, ensure_ascii=False)


def bank_positions(net: InterventableNet, base: Tensor, source: Tensor) -> BankPositions | None:
    """The positions of ``net`` that are sites for a bank of (base, source) token ids.

    Args:
        net: a token net (it has ``labels``, ``named`` and ``pad_token_id``); another net
            gives None.
        base, source: (P, T) token ids of the bank's pairs.
    """
    labels: list[str] | None = getattr(net, "labels", None)
    named: Mapping[str, Any] | None = getattr(net, "named", None)
    if labels is None or named is None or base.dim() != 2 or base.shape[0] == 0:
        return None
    pad: int | None = getattr(net, "pad_token_id", None)
    ids = torch.cat([base, source]).long().cpu()  # (2P, T)
    where = resolve_positions(ids, pad, named)  # (2P, L): each label's index in each prompt
    last = where[:, labels.index(LAST)]
    same_prefix = (base.long().cpu() == source.long().cpu()).long().cumprod(dim=1).bool()
    kept: dict[tuple[int, ...], str] = {}
    for column in _preference(labels, named):
        label = labels[column]
        if label.isdigit():
            index = int(label)
            if bool((last < index).any()) or bool(same_prefix[:, index].all()):
                continue  # padding in some prompt, or the same prefix in every pair
        kept.setdefault(tuple(where[:, column].tolist()), label)
    sites = tuple(label for label in labels if label in set(kept.values()))
    decode = token_decoder(net)
    tokens = {}
    if decode is not None:
        rows = torch.arange(ids.shape[0])
        for label in sites:
            held = ids[rows, where[:, labels.index(label)]]  # (2P,)
            values, counts = torch.unique(held, return_counts=True)
            top = int(counts.argmax())
            if int(counts[top]) >= TOKEN_SHARE * ids.shape[0]:
                tokens[label] = display_token(decode(int(values[top])))
    return BankPositions(sites, tokens)


def _preference(labels: Sequence[str], named: Mapping[str, Any]) -> list[int]:
    """Label columns in the order that names a shared token: last, named, then indices."""
    first = [labels.index(LAST), *(labels.index(name) for name in named)]
    return first + [i for i in range(len(labels)) if i not in first]
