"""Step 1 of a level: its candidate sites, the coupling groups that share them, and the PCA
frames a PCA level reads its sites in (plot-method.md §5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from core.errors import SiteError
from core.level_inputs import LevelInputs
from core.nets.base import InterventableNet
from core.sites import (
    Site,
    block_sites,
    is_token_net,
    location_sites,
    neuron_sites,
    parse_token_location,
    pca_band_sites,
    pca_prefix_sites,
    unique_sites,
)
from core.spec import LevelSpec
from core.token_levels import enumerate_token_sites
from core.token_positions import BankPositions, bank_positions


@dataclass(frozen=True)
class CouplingGroup:
    """Variables coupled together, and the previous level's sites their sites refine.

    A level has one shared group (every variable) or, in ``per_variable`` scope, one group
    per variable.

    Attributes:
        variables: the group's variables, in job order.
        parents: the kept sites the group's sites refine; None at the first level (every
            location of the net).
    """

    variables: tuple[str, ...]
    parents: tuple[Site, ...] | None = None


@dataclass(frozen=True)
class LevelSites:
    """What a level couples: its sites and, per coupling group, which of them it sees.

    Attributes:
        sites: every site of the level (the union of the groups'), in net order.
        frames: location -> (D, K) PCA frame, for the locations a PCA level reads.
        directions: location -> coordinates a site's start:stop indexes (the width, or the
            number of PCA directions of a location with a frame).
        groups: the coupling groups, in job order of their first variable.
        columns: per group, the indices into ``sites`` of the group's sites.
        labels: site id -> display label (with its token) for the sites of a token net.
    """

    sites: tuple[Site, ...]
    frames: dict[str, Tensor]
    directions: dict[str, int]
    groups: tuple[CouplingGroup, ...]
    columns: tuple[tuple[int, ...], ...]
    labels: dict[str, str] = field(default_factory=dict)

    def group_sites(self, group: int) -> list[Site]:
        """The sites of group ``group``, in its column order."""
        return [self.sites[c] for c in self.columns[group]]


def coupling_groups(level: LevelSpec, variables: Sequence[str],
                    kept: Mapping[str, Sequence[Site]] | None) -> list[CouplingGroup]:
    """The coupling groups of a level: one shared group, or one per variable.

    Args:
        kept: per variable, the sites the previous level kept (None at the first level).
    """
    if kept is None:
        return [CouplingGroup(tuple(variables))]
    if level.scope == "per_variable":
        return [CouplingGroup((v,), tuple(kept[v])) for v in variables]
    shared = tuple(dict.fromkeys(site for v in variables for site in kept[v]))
    return [CouplingGroup(tuple(variables), shared)]


def in_net_order(sites: Sequence[Site], widths: Mapping[str, int]) -> list[Site]:
    """``sites`` without repeats, by location in forward order, then kind, start and stop
    (nested prefixes and multi-resolution groups share a start)."""
    order = list(widths)
    return sorted(unique_sites(sites),
                  key=lambda s: (order.index(s.location), s.kind, s.start, s.stop))


def enumerate_sites(level: LevelSpec, net: InterventableNet, parents: Sequence[Site] | None,
                    frames: dict[str, Tensor], positions: BankPositions | None = None
                    ) -> list[Site]:
    """The candidate sites of a level, refining ``parents`` (or every location).

    A block level offers groups of every size in ``group_sizes``; a PCA level offers bands
    of ``band_size`` directions and, with ``prefixes``, the nested prefixes (top 1, 2, 4, …)
    of each parent: overlapping sites that compete in the same coupling.

    Args:
        positions: a token net's positions that are sites for the job's bank (None: all).
    """
    widths = net.widths
    if is_token_net(widths) and level.granularity in ("position", "layer", "step", "head"):
        return enumerate_token_sites(level, widths, parents,
                                     positions.sites if positions is not None else None)
    prefix = next(iter(widths)).split(":")[0]
    if level.granularity in ("position", "head") and prefix != "module":
        raise SiteError(f"{level.granularity} levels need a token net (a transformer)",
                        "levels.granularity")
    if prefix == "module" and level.granularity in ("layer", "position"):
        return module_location_sites(level, widths)
    if level.granularity in ("layer", "step"):
        if level.granularity != prefix:
            raise SiteError(f"this net's locations are {prefix}:N, not {level.granularity}:N",
                            "levels.granularity")
        return location_sites(widths)
    roots = list(parents) if parents else location_sites(widths)
    if not parents and positions is not None and is_token_net(widths):
        roots = [site for site in roots if _position(site) in positions.sites]
    if level.granularity == "block":
        sites = [s for size in level.group_sizes for s in block_sites(roots, size)]
    elif level.granularity == "neuron":
        sites = neuron_sites(roots)
    else:
        pca_roots = [Site(p.location, "pca", 0, int(frames[p.location].shape[1]))
                     if p.kind == "all" else p for p in roots]
        sites = pca_band_sites(pca_roots, level.band_size)
        if level.prefixes:
            sites += pca_prefix_sites(pca_roots)
    return in_net_order(sites, widths)


def module_location_sites(level: LevelSpec, widths: Mapping[str, int]) -> list[Site]:
    """A module net's whole locations; a position level keeps the sequence locations (those
    at ``level.positions`` when given)."""
    out = []
    for location, width in widths.items():
        _, _, position = location.partition("/pos:")
        if level.granularity == "position" and (
                not position or (level.positions is not None and position not in level.positions)):
            continue
        out.append(Site(location, "all", 0, width))
    if not out:
        raise SiteError("no module location has a position (give a token axis)",
                        "levels.granularity")
    return out


def _position(site: Site) -> str | None:
    parsed = parse_token_location(site.location)
    return parsed.position if parsed is not None else None


def pca_frames(inputs: LevelInputs, locations: Sequence[str]) -> dict[str, Tensor]:
    """(D, K) PCA frames of the fit bank's base and source activations at ``locations``,
    computed where the traces are (the job's backend)."""
    return inputs.backend.pca_frames(list(dict.fromkeys(locations)))


def site_positions(inputs: LevelInputs) -> BankPositions | None:
    """A token net's positions that are sites for the job's fit bank (None: not a token
    net); what both the level's traces and its sites are chosen from."""
    fit = inputs.banks.fit
    return bank_positions(inputs.net, fit.base, fit.source) \
        if is_token_net(inputs.net.widths) else None


def level_locations(level: LevelSpec, inputs: LevelInputs,
                    kept: Mapping[str, Sequence[Site]] | None) -> list[str]:
    """The locations a level reads and intervenes at, in net order: what its traces keep.

    A PCA level reads its parents' locations (every location at a first level); the other
    levels, their sites' locations.
    """
    groups = coupling_groups(level, inputs.variables, kept)
    if level.granularity == "pca" and any(group.parents is None for group in groups):
        locations = list(inputs.net.widths)
    elif level.granularity == "pca":
        locations = [p.location for group in groups for p in (group.parents or ())]
    else:
        positions = site_positions(inputs)
        locations = [site.location for group in groups
                     for site in enumerate_sites(level, inputs.net, group.parents, {}, positions)]
    order = {loc: i for i, loc in enumerate(inputs.net.widths)}
    return sorted(set(locations), key=order.__getitem__)


def level_frames(level: LevelSpec, inputs: LevelInputs, parents: Sequence[Site] | None
                 ) -> dict[str, Tensor]:
    """PCA frames of the locations a PCA level looks at (its parents', or every one)."""
    if level.granularity != "pca":
        return {}
    return pca_frames(inputs, [p.location for p in parents] if parents else list(inputs.net.widths))


def enumerate_level_sites(level: LevelSpec, inputs: LevelInputs,
                          kept: Mapping[str, Sequence[Site]] | None) -> LevelSites:
    """Step 1: the level's coupling groups, their sites and the level's PCA frames.

    Args:
        kept: per variable, the sites the previous level kept (None at the first level).
    """
    widths = inputs.net.widths
    groups = coupling_groups(level, inputs.variables, kept)
    every_parent = [p for group in groups for p in (group.parents or ())]
    frames = level_frames(level, inputs, every_parent or None)
    positions = site_positions(inputs)
    per_group = [enumerate_sites(level, inputs.net, group.parents, frames, positions)
                 for group in groups]
    sites = in_net_order([s for group_sites in per_group for s in group_sites], widths)
    position = {site: i for i, site in enumerate(sites)}
    directions = {loc: (int(frames[loc].shape[1]) if loc in frames else width)
                  for loc, width in widths.items()}
    return LevelSites(tuple(sites), frames, directions, tuple(groups),
                      tuple(tuple(position[s] for s in group_sites) for group_sites in per_group),
                      positions.site_labels(sites) if positions is not None else {})
