"""Token positions and per-token streams shared by the token nets (our transformer, local HF).

A token net keeps two streams per traced batch: the residual stream before and after every
block, ``resid`` (B, L + 1, T, D), and every head's output before the output projection,
``z`` (B, L, T, H, d_head), plus ``positions`` (B, P): the index each position label
resolves to in each example. Every location (``resid:3/pos:last``, ``head:1.0/pos:7``, ...)
is derived from these on demand, so a trace costs O(L T D) per example however many
positions are named.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from core.errors import ModelLoadError, SiteError
from core.nets.base import DerivedActivations, Edit, InterventableNet, tile
from core.sites import TOKEN_COMPONENTS, TokenLocation, parse_token_location

LAST = "last"

# block i, z (n, H * d_head) -> that block's attention output (n, D)
Projection = Callable[[int, Tensor], Tensor]


@dataclass(frozen=True)
class NamedPosition:
    """A position computed from the prompt: the ``occurrence``-th (0-based) occurrence of
    ``token``, shifted by ``offset`` (``{"token": 7, "offset": 1}``: the token after the
    first token 7)."""

    token: int
    occurrence: int = 0
    offset: int = 0


def parse_named_positions(value: object, where: str = "config.json:named_positions"
                          ) -> dict[str, NamedPosition]:
    """``{name: {"token": id, "occurrence": k, "offset": o}}`` -> named positions.

    Raises:
        ModelLoadError: naming the bad entry.
    """
    if not isinstance(value, Mapping):
        raise ModelLoadError("must be an object of name -> {token, occurrence, offset}", where)
    out = {}
    for name, spec in value.items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not name.isidentifier() or not name.islower() \
                or name == LAST:
            raise ModelLoadError("a position name is a lower-case identifier other than "
                                 "'last'", here)
        if not isinstance(spec, Mapping) or set(spec) - {"token", "occurrence", "offset"} \
                or "token" not in spec:
            raise ModelLoadError("must be {token, occurrence?, offset?}", here)
        values = [spec["token"], spec.get("occurrence", 0), spec.get("offset", 0)]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values) \
                or values[0] < 0 or values[1] < 0:
            raise ModelLoadError("token and occurrence are integers >= 0, offset an integer",
                                 here)
        out[name] = NamedPosition(*values)
    return out


def position_labels(max_len: int, named: Mapping[str, NamedPosition]) -> list[str]:
    """Every position label of a net: indices ``0..T-1``, ``last``, then the named ones."""
    return [*map(str, range(max_len)), LAST, *named]


def resolve_positions(ids: Tensor, pad_token_id: int | None,
                      named: Mapping[str, NamedPosition]) -> Tensor:
    """(B, P) long: where each position label of ``position_labels`` falls in each example.

    Args:
        ids: (B, T) token ids, right-padded with ``pad_token_id`` (None: never padded).

    Raises:
        SiteError: a named position is missing from an example, or falls outside it.
    """
    batch, length = ids.shape
    index = torch.arange(length, device=ids.device).expand(batch, length)  # (B, T)
    if pad_token_id is None:
        last = torch.full((batch,), length - 1, device=ids.device)
    else:
        last = (ids != pad_token_id).long().sum(dim=1).clamp(min=1) - 1  # (B,)
    columns = [index, last.unsqueeze(1)]
    for name, spec in named.items():
        hits = (ids == spec.token) & ((ids == spec.token).long().cumsum(dim=1)
                                      == spec.occurrence + 1)  # (B, T)
        found = hits.any(dim=1)
        position = hits.long().argmax(dim=1) + spec.offset  # (B,)
        if not bool(found.all()) or bool(((position < 0) | (position > last)).any()):
            raise SiteError(f"named position {name!r} is missing from or outside an example",
                            f"pos:{name}")
        columns.append(position.unsqueeze(1))
    return torch.cat(columns, dim=1)


def token_widths(n_layers: int, n_heads: int, d_model: int, labels: list[str],
                 d_head: int | None = None) -> dict[str, int]:
    """Location -> width, in forward order: per block its heads, attn, mlp, then resid.

    ``d_head`` defaults to ``d_model // n_heads``.
    """
    widths: dict[str, int] = {}
    for block in range(n_layers):
        for component in TOKEN_COMPONENTS:
            heads = range(n_heads) if component == "head" else [None]
            for head in heads:
                width = (d_head or d_model // n_heads) if head is not None else d_model
                for label in labels:
                    widths[TokenLocation(component, block, label, head).id] = width  # type: ignore[arg-type]
    return widths


@dataclass(frozen=True)
class StreamsKept:
    """Which layers of the two streams a trace keeps (all positions of each).

    Attributes:
        resid: indices into the residual stream (0: the embedding, i + 1: after block i).
        z: blocks whose head outputs are kept.
    """

    resid: tuple[int, ...]
    z: tuple[int, ...]

    @classmethod
    def every(cls, n_layers: int) -> StreamsKept:
        return cls(tuple(range(n_layers + 1)), tuple(range(n_layers)))


def streams_needed(locations: Collection[str] | None, n_layers: int) -> StreamsKept:
    """The stream layers that serve ``locations`` (None: every one): their activations, and a
    resume whose first edit is among them.

    A resume from an edit in block b starts from the residual entering b (``resid`` b), or,
    when block b is edited only in its output, from that output edited (``resid`` b + 1).
    ``resid:b`` reads ``resid`` b + 1; ``head`` and ``attn`` read block b's ``z``; ``mlp``
    reads both residuals around b and its ``z``.

    Raises:
        SiteError: a location that is not a token location.
    """
    if locations is None:
        return StreamsKept.every(n_layers)
    resid: set[int] = set()
    z: set[int] = set()
    for location in locations:
        parsed = parse_token_location(location)
        if parsed is None:
            raise SiteError("not a location of this net", location)
        block = parsed.block
        if parsed.component == "resid":
            resid.add(block + 1)
            continue
        resid.add(block)
        z.add(block)
        if parsed.component == "mlp":
            resid.add(block + 1)
    return StreamsKept(tuple(sorted(resid)), tuple(sorted(z)))


@dataclass(frozen=True)
class TokenDerivation:
    """Derives a location's (B, D) activation from a trace's kept streams.

    ``resid`` (B, len(kept.resid), T, D) and ``z`` (B, len(kept.z), T, H, d_head) hold the
    kept layers in ``kept`` order; a location whose layers were not kept raises ``KeyError``
    (a level traces only the locations it needs: ``core.nets.base.InterventableNet.trace``).
    A derived activation is fp32 (the streams may be in the net's half precision).
    """

    labels: tuple[str, ...]
    project: Projection
    kept: StreamsKept

    def resid(self, streams: Mapping[str, Tensor], index: int) -> Tensor:
        """(B, T, D) the residual stream at ``index`` (0: embedding, i + 1: after block i)."""
        if index not in self.kept.resid:
            raise KeyError(f"resid layer {index} was not traced (kept {list(self.kept.resid)})")
        return streams["resid"][:, self.kept.resid.index(index)]

    def z(self, streams: Mapping[str, Tensor], block: int) -> Tensor:
        """(B, T, H, d_head) block ``block``'s head outputs."""
        if block not in self.kept.z:
            raise KeyError(f"block {block}'s heads were not traced (kept {list(self.kept.z)})")
        return streams["z"][:, self.kept.z.index(block)]

    def __call__(self, streams: dict[str, Tensor], location: str) -> Tensor:
        parsed = parse_token_location(location)
        if parsed is None or parsed.position not in self.labels:
            raise KeyError(location)
        positions = streams["positions"]
        rows = torch.arange(positions.shape[0], device=positions.device)
        at = positions[:, self.labels.index(parsed.position)].to(streams["resid"].device)
        rows = rows.to(at.device)
        block = parsed.block
        if parsed.component == "resid":
            return self.resid(streams, block + 1)[rows, at].float()
        if parsed.component == "head":
            return self.z(streams, block)[rows, at, parsed.head].float()
        z = self.z(streams, block)[rows, at].flatten(1)
        attn = self.project(block, z).float()  # (B, D)
        if parsed.component == "attn":
            return attn
        # every block adds attn and mlp to the stream: mlp = Δresid - attn
        before, after = (self.resid(streams, block + i)[rows, at].float() for i in (0, 1))
        return after - before - attn


def token_activations(resid: Tensor, z: Tensor, positions: Tensor, labels: list[str],
                      project: Projection, kept: StreamsKept | None = None
                      ) -> DerivedActivations:
    """Lazily derived location activations of a traced batch.

    Args:
        resid: (B, R, T, D) residual stream layers ``kept.resid`` (all L + 1 by default;
            index 0 is the embedding, i + 1 after block i).
        z: (B, Z, T, H, d_head) head outputs before the output projection, blocks ``kept.z``.
        positions: (B, P) resolved ``labels``.
        project: the blocks' attention contributions, to derive ``attn`` from ``z``.
        kept: which layers ``resid`` and ``z`` hold; None: every one.
    """
    if kept is None:
        kept = StreamsKept.every(int(resid.shape[1]) - 1)
    return DerivedActivations({"resid": resid, "z": z, "positions": positions},
                              TokenDerivation(tuple(labels), project, kept))


def traced_resid(trace_activations: object, index: int) -> Tensor:
    """(B, T, D) residual layer ``index`` of a token net's trace."""
    assert isinstance(trace_activations, DerivedActivations)
    derive = trace_activations.derive
    assert isinstance(derive, TokenDerivation)
    return derive.resid(trace_activations.streams, index)


def group_edits(edits: Mapping[str, Edit], labels: list[str]
                ) -> dict[int, list[tuple[TokenLocation, int, Edit]]]:
    """block -> [(location, position column, edit)] in forward order inside the block."""
    column = {label: i for i, label in enumerate(labels)}
    grouped: dict[int, list[tuple[TokenLocation, int, Edit]]] = {}
    for location, edit in edits.items():
        parsed = parse_token_location(location)
        if parsed is None or parsed.position not in column:
            raise SiteError("not a location of this net", location)
        grouped.setdefault(parsed.block, []).append((parsed, column[parsed.position], edit))
    for group in grouped.values():
        group.sort(key=lambda item: TOKEN_COMPONENTS.index(item[0].component))
    return grouped


def edit_at(stream: Tensor, at: Tensor, edit: Edit, head: int | None = None) -> Tensor:
    """Apply ``edit`` to each row's activation at position ``at`` (and ``head``).

    Args:
        stream: (R, T, D) or, with ``head``, (R, T, H, d_head).
        at: (R,) position of each row.
        edit: (R, D) -> (R, D) or (copies * R, D) (it may tile, the first edit does).

    Returns:
        The edited stream, (R, ...) or (copies * R, ...) copy-major; ``stream`` is untouched.
    """
    return edit_positions(stream, [(at, edit, head)])


def edit_positions(stream: Tensor, edits: list[tuple[Tensor, Edit, int | None]]) -> Tensor:
    """Apply several edits in order, each to its rows' position (and head), copying once.

    Each edit reads the activation as the edits before it left it (two labels may resolve
    to one token). ``at`` of an edit has the rows of ``stream``; an edit that tiles grows
    the rows copy-major and the later ``at`` are tiled to match.

    Args:
        stream: (R, T, D) or (R, T, H, d_head); untouched.
        edits: (at (R,), edit, head or None) in the order they apply.

    Returns:
        The edited stream, (R', ...) copy-major.
    """
    out: Tensor | None = None
    for at, edit, head in edits:
        current_stream = stream if out is None else out
        rows = torch.arange(current_stream.shape[0], device=stream.device)
        at = match_rows(at, current_stream.shape[0])
        index = (rows, at) if head is None else (rows, at, head)
        new = edit(current_stream[index])  # (rows, D) -> (copies * rows, D)
        copies = new.shape[0] // current_stream.shape[0]
        if copies > 1:
            out = tile(current_stream, copies)  # a fresh copy
        elif out is None:
            out = stream.clone()
        rows, at = torch.arange(out.shape[0], device=out.device), tile(at, copies)
        out[(rows, at) if head is None else (rows, at, head)] = new.to(out.dtype)
    return stream if out is None else out


def match_rows(tensor: Tensor, rows: int) -> Tensor:
    """Tile (R, ...) copy-major to ``rows`` rows (a multiple of R)."""
    return tile(tensor, rows // tensor.shape[0])



# fp32 tensors of a forward's peak, per token: stream-wide ones (the stream, the norms, q,
# k, v, the attention output, an edit's copies) and MLP-wide ones (the up / gate projections
# and the activation's temporaries). Measured on GPT-2-small (d_model 768, MLP 3072) on the
# CPU: 77 KB a token at its peak; this gives 86 KB.
STREAM_TENSORS = 8
MLP_TENSORS = 5


class TokenNet(InterventableNet):
    """What the token nets share: token-id inputs of ``max_len`` and a location table.

    Attributes:
        mlp_width: the width of a block's MLP hidden layer (what a forward's peak holds).
        n_heads: attention heads per block.
    """

    max_len: int
    mlp_width: int
    n_heads: int
    _widths: dict[str, int]

    @property
    def working_bytes_per_row(self) -> int:
        """Stream-wide and MLP-wide fp32 tensors and two attention score maps, per token."""
        d_model = max(w for loc, w in self.widths.items() if loc.startswith("resid:"))
        per_token = 4 * (STREAM_TENSORS * d_model + MLP_TENSORS * self.mlp_width
                         + 2 * self.n_heads * self.max_len)
        return self.max_len * per_token

    @property
    def widths(self) -> dict[str, int]:
        return self._widths

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.max_len,)

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.long

    @property
    def tokens_per_row(self) -> int:
        return self.max_len

    @property
    def scoped_traces(self) -> bool:
        return True


def stack_layers(layers: list[Tensor], shape: tuple[int, ...], like: Tensor) -> Tensor:
    """(B, len(layers), ...) the kept layers of one stream stacked, or an empty
    (B, 0, ...) tensor of ``like``'s dtype and device when none is kept; ``shape`` is one
    layer's (B, ...)."""
    if layers:
        return torch.stack(layers, dim=1)
    return like.new_empty(shape[0], 0, *shape[1:])
