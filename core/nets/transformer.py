"""The built-in decoder-only transformer: pre-LN blocks, learned positions, causal attention.

Locations are per block, component and position (``resid:3/pos:last``, ``attn:1/pos:7``,
``mlp:0/pos:query``, ``head:1.2/pos:last``; see core/sites.py). The output is one head:
the logits of the label tokens (``label_token_ids``) at the last real token, (B, 1, C).
Inputs are token ids (B, max_len), right-padded with ``pad_token_id`` when it is set.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional

from core.nets.base import Edit, Trace
from core.nets.tokenizer import WordTokenizer
from core.nets.tokens import (
    LAST,
    TokenNet,
    edit_positions,
    group_edits,
    match_rows,
    parse_named_positions,
    position_labels,
    resolve_positions,
    stack_layers,
    streams_needed,
    token_activations,
    token_widths,
    traced_resid,
)


class Block(nn.Module):
    """One pre-LN block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_mlp)
        self.fc2 = nn.Linear(d_mlp, d_model)

    def heads(self, x: Tensor, queries: Tensor | None = None) -> Tensor:
        """(R, T, D) stream -> (R, T, H, d_head) head outputs before the projection.

        With ``queries`` (R, Q) positions, only those positions attend (each to the
        positions up to it): (R, Q, H, d_head).
        """
        rows, length, width = x.shape
        normed = self.ln1(x)
        if queries is None:
            q, k, v = self.qkv(normed).split(width, dim=-1)  # 3 × (R, T, D)
            q, k, v = (t.view(rows, length, self.n_heads, -1).transpose(1, 2)
                       for t in (q, k, v))
            z = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return z.transpose(1, 2)
        weight, bias = self.qkv.weight, self.qkv.bias
        at = torch.arange(rows, device=x.device).unsqueeze(1)
        q = functional.linear(normed[at, queries], weight[:width], bias[:width])  # (R, Q, D)
        kv = functional.linear(normed, weight[width:], bias[width:])  # (R, T, 2D)
        q = q.view(rows, queries.shape[1], self.n_heads, -1).transpose(1, 2)
        k, v = (t.reshape(rows, length, self.n_heads, -1).transpose(1, 2)
                for t in (kv[..., :width], kv[..., width:]))
        seen = torch.arange(length, device=x.device) <= queries.unsqueeze(2)  # (R, Q, T)
        z = functional.scaled_dot_product_attention(q, k, v, attn_mask=seen.unsqueeze(1))
        return z.transpose(1, 2)

    def mlp(self, x: Tensor) -> Tensor:
        """(R, T, D) stream after attention -> (R, T, D) MLP output."""
        out: Tensor = self.fc2(functional.gelu(self.fc1(self.ln2(x))))
        return out


class TransformerNet(TokenNet):
    """A small causal transformer whose output is the label tokens' logits at the last token.

    ``config``: ``vocab_size``, ``d_model``, ``n_layers``, ``n_heads`` (dividing
    ``d_model``), ``d_mlp``, ``max_len``, ``label_token_ids`` (C ids), ``pad_token_id``
    (int or None: inputs are never padded) and ``named_positions`` (name ->
    ``{token, occurrence, offset}``).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        d_model, self.n_layers = int(config["d_model"]), int(config["n_layers"])
        self.n_heads, self.max_len = int(config["n_heads"]), int(config["max_len"])
        self.mlp_width = int(config["d_mlp"])
        self.pad_token_id: int | None = config.get("pad_token_id")
        self.named = parse_named_positions(config.get("named_positions", {}))
        self.labels = position_labels(self.max_len, self.named)
        self.token_embedding = nn.Embedding(int(config["vocab_size"]), d_model)
        self.position_embedding = nn.Embedding(self.max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, self.n_heads, int(config["d_mlp"]))
                                    for _ in range(self.n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, int(config["vocab_size"]), bias=False)
        self.register_buffer("label_ids", torch.tensor(config["label_token_ids"]),
                             persistent=False)
        self._widths = token_widths(self.n_layers, self.n_heads, d_model, self.labels)
        self.tokenizer: WordTokenizer | None = None

    @property
    def output_shape(self) -> tuple[int, int]:
        return (1, len(self.config["label_token_ids"]))

    def text_encoder(self) -> Callable[[str], list[int]] | None:
        if self.tokenizer is None:
            return None
        return partial(_encode_words, self.tokenizer, self.max_len, self.pad_token_id)

    def label_names(self) -> tuple[str, ...]:
        if self.tokenizer is None:
            return ()
        return tuple(self.tokenizer.vocab[i] for i in self.config["label_token_ids"])

    def project(self, block: int, z: Tensor) -> Tensor:
        """Block ``block``'s output projection: (n, D) concatenated heads -> (n, D)."""
        out: Tensor = self.block(block).out(z)
        return out

    def block(self, index: int) -> Block:
        return cast(Block, self.blocks[index])

    def readout(self, x: Tensor, positions: Tensor) -> Tensor:
        """(R, T, D) final stream, (R, P) positions -> (R, 1, C) label logits."""
        rows = torch.arange(x.shape[0], device=x.device)
        return self._logits(x[rows, positions[:, self.labels.index(LAST)]])

    def _logits(self, last: Tensor) -> Tensor:
        """(R, D) final stream at the last real token -> (R, 1, C) label logits."""
        label_ids: Tensor = self.label_ids  # type: ignore[assignment]
        logits = functional.linear(self.ln_f(last), self.unembed.weight[label_ids])
        return logits.unsqueeze(1)

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        kept = streams_needed(locations, self.n_layers)
        positions = resolve_positions(inputs, self.pad_token_id, self.named)  # (B, P)
        where = torch.arange(inputs.shape[1], device=inputs.device)
        x = self.token_embedding(inputs) + self.position_embedding(where)  # (B, T, D)
        streams, heads = [x] if 0 in kept.resid else [], []
        for index in range(self.n_layers):
            block = self.block(index)
            z = block.heads(x)  # (B, T, H, dh)
            x = x + block.out(z.flatten(2))
            x = x + block.mlp(x)
            if index + 1 in kept.resid:
                streams.append(x)
            if index in kept.z:
                heads.append(z)
        rows, length, width = x.shape
        activations = token_activations(stack_layers(streams, (rows, length, width), x),
                                        stack_layers(heads, (rows, length, self.n_heads,
                                                       width // self.n_heads), x),
                                        positions, self.labels, self.project, kept)
        return Trace(inputs=inputs, activations=activations,
                     logits=self.readout(x, positions))

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        """Re-run the blocks from the first edited one.

        Only blocks from the first edited one on are recomputed (all positions: later
        positions attend to the edited one); when that block is edited only in its
        residual output, it is not recomputed either. The last block is computed only at
        the read-out position and the positions its own edits touch: its other positions
        reach no output.
        """
        grouped, positions, begin, x = self.resume_start(trace, edits)
        final, last = self.n_layers - 1, self.labels.index(LAST)
        for index in range(begin, final):
            x = self._block(index, x, positions, grouped.get(index, []))
        if begin <= final:
            edits_here = grouped.get(final, [])
            queries, slots = query_slots(match_rows(positions, x.shape[0]),
                                         [column for _, column, _ in edits_here] + [last])
            x = self._block(final, x, slots, edits_here, queries)  # (R, Q, D)
            at = slots
        else:
            at = positions
        rows = torch.arange(x.shape[0], device=x.device)
        out = x[rows, match_rows(at, x.shape[0])[:, last]]  # (R, D)
        return self._logits(match_rows(out, copies * trace.batch_size))

    def resume_start(self, trace: Trace, edits: Mapping[str, Edit]
                     ) -> tuple[dict[int, list[tuple[Any, int, Edit]]], Tensor, int, Tensor]:
        """Where a resume starts: the edits by block, the (B, P) positions, the first block
        to compute and its (B, T, D) input (the first edited block's output, edited, when
        only its residual output is edited: that block is skipped too).

        Raises:
            SiteError: an unknown location, or no edit.
        """
        self.first_edited(edits)
        grouped = group_edits(edits, self.labels)
        streams = trace.activations.streams  # type: ignore[attr-defined]
        positions: Tensor = streams["positions"]
        first = min(grouped)
        only_resid = all(loc.component == "resid" for loc, _, _ in grouped[first])
        begin = first + 1 if only_resid else first
        x = traced_resid(trace.activations, begin)  # (B, T, D)
        if only_resid:
            x = self._edit(x, positions, grouped[first], "resid")
        return grouped, positions, begin, x

    def _block(self, index: int, x: Tensor, positions: Tensor,
               edits: list[tuple[Any, int, Edit]], queries: Tensor | None = None) -> Tensor:
        """Block ``index`` on (R, T, D) with its edits; rows grow when an edit tiles.

        With ``queries`` (R, Q) the block is computed at those positions alone and returns
        (R', Q, D); ``positions`` then maps each label to its slot among the queries.
        """
        block = self.block(index)
        z = self._edit(block.heads(x, queries), positions, edits, "head")  # (R, T|Q, H, dh)
        attn = self._edit(block.out(z.flatten(2)), positions, edits, "attn")  # (R', T|Q, D)
        if queries is not None:
            x = x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), queries]
        x = match_rows(x, attn.shape[0]) + attn
        mlp = self._edit(block.mlp(x), positions, edits, "mlp")
        x = match_rows(x, mlp.shape[0]) + mlp
        return self._edit(x, positions, edits, "resid")

    @staticmethod
    def _edit(stream: Tensor, positions: Tensor, edits: list[tuple[Any, int, Edit]],
              component: str) -> Tensor:
        """``stream`` with the edits of ``component`` applied (one copy for all of them)."""
        at = match_rows(positions, stream.shape[0])
        mine = [(at[:, column], edit, loc.head if component == "head" else None)
                for loc, column, edit in edits if loc.component == component]
        return edit_positions(stream, mine)


def _encode_words(tokenizer: WordTokenizer, length: int, pad: int | None, text: str
                  ) -> list[int]:
    """A picklable text encoder (it travels to the job driver with ``NetOutline``)."""
    return tokenizer.encode(text, length, pad)


def query_slots(positions: Tensor, columns: list[int]) -> tuple[Tensor, Tensor]:
    """The positions of some label columns as query slots.

    Args:
        positions: (R, P) each row's position of every label.
        columns: the label columns wanted.

    Returns:
        queries (R, Q): the wanted columns' positions; slots (R, P): for each wanted column
        the first slot holding its position (labels of one token share a slot), 0 elsewhere.
    """
    wanted = list(dict.fromkeys(columns))
    queries = positions[:, wanted]  # (R, Q)
    first = (queries.unsqueeze(2) == queries.unsqueeze(1)).int().argmax(dim=2)  # (R, Q)
    slots = torch.zeros_like(positions)
    slots[:, wanted] = first
    return queries, slots
