"""The sites a coarse level enumerates on a token net (a transformer): positions, layers, heads.

``position``: the output of one block (``LevelSpec.layer``, default block (L - 1) // 2) at each
position; ``layer``: every block at the positions the previous level kept (or at
``LevelSpec.positions``); ``head``: every head of the blocks and positions kept before.
Finer levels (blocks, neurons, PCA bands) refine a token location like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import SiteError
from core.sites import Site, TokenLocation, parse_token_location, token_sites
from core.spec import LevelSpec


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
                          parents: Sequence[Site] | None) -> list[Site]:
    """The whole-location sites of a ``position``, ``layer`` or ``head`` level.

    Args:
        level: the level; ``layer``, ``component`` and ``positions`` narrow it.
        widths: the net's locations.
        parents: the sites the previous level kept (None on the first level).

    Raises:
        SiteError: ``levels.layer`` beyond the net's blocks, a granularity a token net has
            not (``step``), or no site left.
    """
    blocks = block_count(widths)
    kept = _parsed(parents) if parents else []
    positions: list[str] | None = (list(dict.fromkeys(p.position for p in kept)) if kept
                                   else level.positions)
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
