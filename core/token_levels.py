"""The sites a coarse level enumerates on a token net (a transformer): positions, layers, heads.

``position``: the output of one block (``LevelSpec.layer``, default block (L - 1) // 2) at each
position; ``layer``: every block at the positions the previous level kept (or at
``LevelSpec.positions``); ``head``: every head of the blocks and positions kept before.
Finer levels (blocks, neurons, PCA bands) refine a token location like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import SiteError
from core.sites import Site, TokenLocation, parse_token_location, token_sites
from core.spec import LevelSpec

# The paper's schedule for a token net (plot-method.md §5), the default of a dataset job on
# one: the residual stream of the middle block at every position the bank fills
# (core.token_positions), every block at each variable's two best positions, then PCA bands
# of its best location. Never block -> neuron over every token location (hundreds of sites
# on the smallest transformer).
TOKEN_NET_LEVELS: tuple[dict[str, Any], ...] = (
    {"granularity": "position", "keep": 2},
    {"granularity": "layer", "keep": 1, "scope": "per_variable"},
    {"granularity": "pca", "band_size": 4, "scope": "per_variable"},
)


def _parsed(sites: Sequence[Site]) -> list[TokenLocation]:
    out = []
    for site in sites:
        parsed = parse_token_location(site.location)
        if parsed is None:
            raise SiteError("not a token location", site.id)
        out.append(parsed)
    return out


def block_count(widths: dict[str, int]) -> int:
    """How many blocks a token net's locations span."""
    return 1 + max(p.block for p in _parsed([Site(loc) for loc in widths]))


def enumerate_token_sites(level: LevelSpec, widths: dict[str, int],
                          parents: Sequence[Site] | None,
                          allowed: Sequence[str] | None = None) -> list[Site]:
    """The whole-location sites of a ``position``, ``layer`` or ``head`` level.

    Args:
        level: the level; ``layer``, ``component`` and ``positions`` narrow it.
        widths: the net's locations.
        parents: the sites the previous level kept (None on the first level).
        allowed: the positions that are sites for the job's bank
            (``core.token_positions``: no padding, one label per token); None: every one.

    Raises:
        SiteError: ``levels.layer`` beyond the net's blocks, a granularity a token net has
            not (``step``), or no site left.
    """
    blocks = block_count(widths)
    kept = _parsed(parents) if parents else []
    positions: list[str] | None = (list(dict.fromkeys(p.position for p in kept)) if kept
                                   else level.positions)
    if not kept and allowed is not None:
        admitted = set(allowed)
        positions = [p for p in (positions if positions is not None else allowed)
                     if ("last" if p == "-1" else p) in admitted]
    if level.granularity == "position":
        layer = (blocks - 1) // 2 if level.layer is None else level.layer
        if layer >= blocks:
            raise SiteError(f"the net has blocks 0..{blocks - 1}", "levels.layer")
        sites = token_sites(widths, [level.component], [layer], positions)
    elif level.granularity == "layer":
        sites = token_sites(widths, [level.component], None, positions)
    elif level.granularity == "head":
        pairs = {(p.block, p.position) for p in kept}
        sites = [s for s in token_sites(widths, ["head"], None, positions)
                 if not pairs or _block_position(s) in pairs]
    else:
        raise SiteError(f"a token net has no {level.granularity} locations (position, "
                        "layer, head)", "levels.granularity")
    if not sites:
        raise SiteError("no site matches (check positions and layer)", "levels.positions")
    return sites


def _block_position(site: Site) -> tuple[int, str]:
    parsed = _parsed([site])[0]
    return parsed.block, parsed.position
