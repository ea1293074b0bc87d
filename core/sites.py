"""Sites as data: a location in the forward pass plus a support inside it, with string ids.

Ids (plot-method.md §1): ``layer:2`` (a hidden layer's whole output), ``step:3`` (a recurrent
net's hidden state after step 3), ``layer:2/dims:16-31`` (coordinates 16..31 inclusive),
``layer:2/dims:17`` (one neuron), ``layer:2/pca:4`` (span of the top 4 principal directions),
``layer:2/pca:4-7`` (principal directions 4..7), ``layer:2/das:4`` (a learned 4-dim subspace).
Supports are half-open ``[start, stop)`` internally and inclusive in ids.

Token nets (transformers) have a location per block, component and position:
``resid:3/pos:last`` (the residual stream after block 3 at the last real token),
``attn:3/pos:7`` (block 3's attention output at position 7), ``mlp:3/pos:query`` (block 3's
MLP output at the named position ``query``) and ``head:3.2/pos:last`` (head 2 of block 3,
its (d_head,) output before the output projection). A position is an index ``N >= 0``,
``last``, ``-1`` (an alias of ``last``) or a name the net computes from the prompt. Any
support may follow: ``resid:3/pos:last/pca:8``.

Any ``nn.Module`` wrapped by ``core.nets.module.ModuleNet`` has a location per module path,
``module:blocks.2.mlp``, and per position for a sequence output, ``module:conv/pos:3``:
``module:blocks.2.mlp/dims:3-5``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from core.errors import SiteError

SupportKind = Literal["all", "dims", "pca", "das"]

_LOCATION = re.compile(
    r"^(?:(layer|step|resid|attn|mlp):(\d+)|head:(\d+)\.(\d+)|module:[A-Za-z0-9_][A-Za-z0-9_.]*)"
    r"(?:/pos:(\d+|-1|[a-z_][a-z0-9_]*))?$"
)
TOKEN_COMPONENTS = ("head", "attn", "mlp", "resid")  # forward order inside one block
TokenComponent = Literal["head", "attn", "mlp", "resid"]
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True, order=True)
class Site:
    """One candidate site.

    Attributes:
        location: the coarse place in the forward pass, e.g. ``layer:2`` or ``step:0``.
        kind: ``all`` (the whole location), ``dims`` (coordinates), ``pca`` (principal
            directions of the location's activations) or ``das`` (a learned subspace).
        start: first coordinate / component of the support (0 for ``all``).
        stop: one past the last coordinate / component (the width for ``all``).
    """

    location: str
    kind: SupportKind = "all"
    start: int = 0
    stop: int = 0

    @property
    def size(self) -> int:
        """Number of coordinates (or basis directions) in the support."""
        return self.stop - self.start

    @property
    def id(self) -> str:
        if self.kind == "all":
            return self.location
        if self.kind == "das":
            return f"{self.location}/das:{self.size}"
        if self.kind == "pca" and self.start == 0:
            return f"{self.location}/pca:{self.stop}"
        if self.kind == "dims" and self.size == 1:
            return f"{self.location}/dims:{self.start}"
        return f"{self.location}/{self.kind}:{self.start}-{self.stop - 1}"

    def __str__(self) -> str:
        return self.id


def parse_site(site_id: str, widths: dict[str, int] | None = None) -> Site:
    """Parse a site id; with ``widths`` (location -> width), also check it exists.

    Raises:
        SiteError: the id does not parse, names an unknown location or leaves the width.
    """
    location, _, support = site_id.partition("/")
    if support.startswith("pos:"):  # a token position belongs to the location
        pos, _, support = support.partition("/")
        token = location.split(":")[0] in TOKEN_COMPONENTS
        location = f"{location}/{'pos:last' if pos == 'pos:-1' and token else pos}"
    if not _LOCATION.match(location):
        raise SiteError(f"cannot parse location {location!r} (expected layer:N, step:N, "
                        "resid|attn|mlp:N/pos:P, head:N.H/pos:P or module:PATH[/pos:P])",
                        site_id)
    width = None
    if widths is not None:
        if location not in widths:
            known = ", ".join(widths)
            raise SiteError(f"the net has no location {location!r} (it has {known})", site_id)
        width = widths[location]
    if not support:
        return Site(location, "all", 0, width if width is not None else 0)
    kind, _, spec = support.partition(":")
    match = _RANGE.match(spec)
    if kind not in ("dims", "pca", "das") or not match:
        raise SiteError(f"cannot parse support {support!r} (dims:A-B, pca:K, pca:A-B, das:K)",
                        site_id)
    first, last = int(match.group(1)), match.group(2)
    if kind == "das" or (kind == "pca" and last is None):
        start, stop = 0, first
    else:
        start, stop = first, (int(last) if last is not None else first) + 1
    if stop <= start:
        raise SiteError("empty support", site_id)
    if width is not None and stop > width:
        raise SiteError(f"support ends at {stop - 1} but {location} has width {width}", site_id)
    return Site(location, kind, start, stop)  # type: ignore[arg-type]


def location_sites(widths: dict[str, int]) -> list[Site]:
    """One whole-location site per location, in forward order."""
    return [Site(loc, "all", 0, width) for loc, width in widths.items()]


def block_sites(parents: Iterable[Site], block_size: int) -> list[Site]:
    """Coordinate groups of ``block_size`` inside each parent (the last may be smaller)."""
    out: list[Site] = []
    for parent in parents:
        _require_coordinates(parent)
        for start in range(parent.start, parent.stop, block_size):
            out.append(Site(parent.location, "dims", start, min(start + block_size, parent.stop)))
    return out


def neuron_sites(parents: Iterable[Site]) -> list[Site]:
    """Every single coordinate inside each parent."""
    return block_sites(parents, 1)


def pca_band_sites(parents: Iterable[Site], band_size: int) -> list[Site]:
    """Bands of ``band_size`` principal directions of each parent's location.

    A whole-location parent is split into bands over all its components; a PCA parent
    is split inside its own band (for a finer PCA level).
    """
    out: list[Site] = []
    for parent in parents:
        if parent.kind not in ("all", "pca"):
            raise SiteError("PCA bands refine a whole location or a PCA band", parent.id)
        for start in range(parent.start, parent.stop, band_size):
            out.append(Site(parent.location, "pca", start, min(start + band_size, parent.stop)))
    return out


def pca_prefix_sites(parents: Iterable[Site]) -> list[Site]:
    """Nested prefixes of each parent's principal directions: its top 1, 2, 4, … and all.

    A whole-location parent's prefixes are ``pca:1``, ``pca:2``, ``pca:4``, … up to its
    ``pca:K``; a PCA parent's start at its own first direction.
    """
    out: list[Site] = []
    for parent in parents:
        if parent.kind not in ("all", "pca"):
            raise SiteError("PCA prefixes refine a whole location or a PCA band", parent.id)
        size = 1
        while size < parent.size:
            out.append(Site(parent.location, "pca", parent.start, parent.start + size))
            size *= 2
        out.append(Site(parent.location, "pca", parent.start, parent.stop))
    return out


def unique_sites(sites: Sequence[Site]) -> list[Site]:
    """Sites without repeats, first occurrence order kept."""
    return list(dict.fromkeys(sites))


def _require_coordinates(parent: Site) -> None:
    if parent.kind not in ("all", "dims"):
        raise SiteError("coordinate groups refine a whole location or a coordinate group",
                        parent.id)


@dataclass(frozen=True)
class TokenLocation:
    """A token net's location: a component of one block at one position.

    Attributes:
        component: ``resid`` (stream after the block), ``attn``/``mlp`` (that sublayer's
            output) or ``head`` (one head's output before the output projection).
        block: the block index.
        position: an index (as text), ``last`` or a named position.
        head: the head index for ``head``, else None.
    """

    component: TokenComponent
    block: int
    position: str
    head: int | None = None

    @property
    def id(self) -> str:
        unit = f"{self.block}.{self.head}" if self.component == "head" else str(self.block)
        return f"{self.component}:{unit}/pos:{self.position}"


def parse_token_location(location: str) -> TokenLocation | None:
    """The parts of a token location id (``resid:3/pos:last``), or None for another kind."""
    match = _LOCATION.match(location)
    if match is None or match.group(5) is None:
        return None
    position = "last" if match.group(5) == "-1" else match.group(5)
    if match.group(3) is not None:
        return TokenLocation("head", int(match.group(3)), position, int(match.group(4)))
    component = match.group(1)
    if component not in TOKEN_COMPONENTS:
        return None
    return TokenLocation(cast(TokenComponent, component), int(match.group(2)), position)


def is_token_net(widths: dict[str, int]) -> bool:
    """Whether the locations are token locations (a transformer), not layers or steps."""
    return parse_token_location(next(iter(widths))) is not None


def token_sites(widths: dict[str, int], components: Iterable[str],
                blocks: Iterable[int] | None = None, positions: Iterable[str] | None = None,
                heads: Iterable[tuple[int, int]] | None = None) -> list[Site]:
    """Whole-location sites of a token net, filtered, in forward order.

    Args:
        widths: the net's location -> width.
        components: which of ``resid``, ``attn``, ``mlp``, ``head`` to keep.
        blocks: keep these blocks (all when None).
        positions: keep these positions (all when None).
        heads: for ``head``, keep these (block, head) pairs (all when None).
    """
    keep_components, keep_blocks = set(components), None if blocks is None else set(blocks)
    keep_positions = None if positions is None else set(positions)
    keep_heads = None if heads is None else set(heads)
    out = []
    for location, width in widths.items():
        parsed = parse_token_location(location)
        if parsed is None or parsed.component not in keep_components:
            continue
        if keep_blocks is not None and parsed.block not in keep_blocks:
            continue
        if keep_positions is not None and parsed.position not in keep_positions:
            continue
        if (keep_heads is not None and parsed.head is not None
                and (parsed.block, parsed.head) not in keep_heads):
            continue
        out.append(Site(location, "all", 0, width))
    return out
