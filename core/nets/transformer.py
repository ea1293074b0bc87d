"""The built-in decoder-only transformer: pre-LN blocks, learned positions, causal attention.

Locations are per block, component and position (``resid:3/pos:last``, ``attn:1/pos:7``,
``mlp:0/pos:query``, ``head:1.2/pos:last``; see core/sites.py). The output is one head:
the logits of the label tokens (``label_token_ids``) at the last real token, (B, 1, C).
Inputs are token ids (B, max_len), right-padded with ``pad_token_id`` when it is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional

from core.nets.base import Edit, Trace
from core.nets.tokenizer import WordTokenizer
from core.nets.tokens import (
    LAST,
    TokenNet,
    edit_at,
    group_edits,
    match_rows,
    parse_named_positions,
    position_labels,
    resolve_positions,
    token_activations,
    token_widths,
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

    def heads(self, x: Tensor) -> Tensor:
        """(R, T, D) stream -> (R, T, H, d_head) head outputs before the projection."""
        rows, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(width, dim=-1)  # 3 × (R, T, D)
        q, k, v = (t.view(rows, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        z = functional.scaled_dot_product_attention(q, k, v, is_causal=True)  # (R, H, T, dh)
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
        tokenizer, pad = self.tokenizer, self.pad_token_id
        return lambda text: tokenizer.encode(text, self.max_len, pad)

    def project(self, block: int, z: Tensor) -> Tensor:
        """Block ``block``'s output projection: (n, D) concatenated heads -> (n, D)."""
        out: Tensor = self.block(block).out(z)
        return out

    def block(self, index: int) -> Block:
        return cast(Block, self.blocks[index])

    def readout(self, x: Tensor, positions: Tensor) -> Tensor:
        """(R, T, D) final stream, (R, P) positions -> (R, 1, C) label logits."""
        rows = torch.arange(x.shape[0], device=x.device)
        last = x[rows, positions[:, self.labels.index(LAST)]]  # (R, D)
        label_ids: Tensor = self.label_ids  # type: ignore[assignment]
        logits = functional.linear(self.ln_f(last), self.unembed.weight[label_ids])
        return logits.unsqueeze(1)

    def trace(self, inputs: Tensor) -> Trace:
        positions = resolve_positions(inputs, self.pad_token_id, self.named)  # (B, P)
        where = torch.arange(inputs.shape[1], device=inputs.device)
        x = self.token_embedding(inputs) + self.position_embedding(where)  # (B, T, D)
        streams, heads = [x], []
        for index in range(self.n_layers):
            block = self.block(index)
            z = block.heads(x)  # (B, T, H, dh)
            x = x + block.out(z.flatten(2))
            x = x + block.mlp(x)
            streams.append(x)
            heads.append(z)
        activations = token_activations(torch.stack(streams, dim=1), torch.stack(heads, dim=1),
                                        positions, self.labels, self.project)
        return Trace(inputs=inputs, activations=activations,
                     logits=self.readout(x, positions))

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        """Re-run the blocks from the first edited one, over every position.

        Only blocks from the first edited one on are recomputed (all positions: later
        positions attend to the edited one); when that block is edited only in its
        residual output, it is not recomputed either.
        """
        self.first_edited(edits)  # unknown locations and empty edits are SiteErrors
        grouped = group_edits(edits, self.labels)
        streams = trace.activations.streams  # type: ignore[attr-defined]
        positions: Tensor = streams["positions"]
        first = min(grouped)
        only_resid = all(loc.component == "resid" for loc, _, _ in grouped[first])
        begin = first + 1 if only_resid else first
        x: Tensor = streams["resid"][:, begin]  # (B, T, D)
        if only_resid:
            x = self._edit_resid(x, positions, grouped[first])
        for index in range(begin, self.n_layers):
            x = self._block(index, x, positions, grouped.get(index, []))
        x = match_rows(x, copies * trace.batch_size)
        return self.readout(x, match_rows(positions, x.shape[0]))

    def _block(self, index: int, x: Tensor, positions: Tensor,
               edits: list[tuple[Any, int, Edit]]) -> Tensor:
        """Block ``index`` on (R, T, D) with its edits; rows grow when an edit tiles."""
        block = self.block(index)
        z = block.heads(x)  # (R, T, H, dh)
        for loc, column, edit in edits:
            if loc.component == "head":
                z = edit_at(z, match_rows(positions, z.shape[0])[:, column], edit, loc.head)
        attn = block.out(z.flatten(2))  # (R', T, D)
        for loc, column, edit in edits:
            if loc.component == "attn":
                attn = edit_at(attn, match_rows(positions, attn.shape[0])[:, column], edit)
        x = match_rows(x, attn.shape[0]) + attn
        mlp = block.mlp(x)
        for loc, column, edit in edits:
            if loc.component == "mlp":
                mlp = edit_at(mlp, match_rows(positions, mlp.shape[0])[:, column], edit)
        x = match_rows(x, mlp.shape[0]) + mlp
        return self._edit_resid(x, positions, edits)

    @staticmethod
    def _edit_resid(x: Tensor, positions: Tensor, edits: list[tuple[Any, int, Edit]]
                    ) -> Tensor:
        for loc, column, edit in edits:
            if loc.component == "resid":
                x = edit_at(x, match_rows(positions, x.shape[0])[:, column], edit)
        return x

