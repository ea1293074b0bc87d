from __future__ import annotations

import pytest

from core.errors import SiteError
from core.sites import Site, block_sites, location_sites, neuron_sites, parse_site, pca_band_sites

WIDTHS = {"layer:0": 16, "layer:1": 16, "layer:2": 32}


@pytest.mark.parametrize("site_id", ["layer:2", "layer:2/dims:16-31", "layer:2/dims:17",
                                     "layer:2/pca:4", "layer:2/pca:4-7", "layer:2/das:4",
                                     "step:3", "step:3/dims:0-7", "layer:5/pos:-1/dims:2"])
def test_site_ids_round_trip(site_id: str) -> None:
    assert parse_site(site_id).id == site_id


def test_dims_range_is_inclusive_in_ids_and_half_open_inside() -> None:
    site = parse_site("layer:2/dims:16-31", WIDTHS)
    assert (site.start, site.stop, site.size) == (16, 32, 16)


def test_whole_location_takes_its_width() -> None:
    assert parse_site("layer:2", WIDTHS) == Site("layer:2", "all", 0, 32)


@pytest.mark.parametrize(("site_id", "reason"), [
    ("lair:2", "cannot parse location"),
    ("layer:9", "no location"),
    ("layer:0/dims:10-20", "width 16"),
    ("layer:0/dims:5-3", "empty support"),
    ("layer:0/cols:1", "cannot parse support"),
])
def test_bad_site_ids_are_named(site_id: str, reason: str) -> None:
    with pytest.raises(SiteError, match=reason) as error:
        parse_site(site_id, WIDTHS)
    assert error.value.where == site_id


def test_enumeration_per_granularity() -> None:
    locations = location_sites(WIDTHS)
    assert [s.id for s in locations] == ["layer:0", "layer:1", "layer:2"]
    blocks = block_sites(locations[2:], 8)
    assert [s.id for s in blocks] == ["layer:2/dims:0-7", "layer:2/dims:8-15",
                                      "layer:2/dims:16-23", "layer:2/dims:24-31"]
    neurons = neuron_sites(blocks[1:2])
    assert [s.id for s in neurons] == [f"layer:2/dims:{i}" for i in range(8, 16)]
    bands = pca_band_sites([Site("layer:0", "pca", 0, 10)], 4)
    assert [s.id for s in bands] == ["layer:0/pca:4", "layer:0/pca:4-7", "layer:0/pca:8-9"]


def test_coordinate_groups_do_not_refine_pca_bands() -> None:
    with pytest.raises(SiteError):
        block_sites([Site("layer:0", "pca", 0, 4)], 2)
