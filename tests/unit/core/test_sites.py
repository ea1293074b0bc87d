from __future__ import annotations

import pytest

from core.errors import SiteError
from core.sites import (
    Site,
    TokenLocation,
    block_sites,
    is_token_net,
    location_sites,
    neuron_sites,
    parse_site,
    parse_token_location,
    pca_band_sites,
    pca_prefix_sites,
    token_sites,
)

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


@pytest.mark.parametrize("site_id", ["resid:3/pos:last", "attn:3/pos:7", "mlp:0/pos:query",
                                     "head:3.2/pos:last", "resid:1/pos:last/pca:8",
                                     "head:0.1/pos:4/dims:2-3", "mlp:2/pos:option_a/das:4"])
def test_token_site_ids_round_trip(site_id: str) -> None:
    site = parse_site(site_id)
    assert site.id == site_id
    parsed = parse_token_location(site.location)
    assert parsed is not None and parsed.id == site.location


def test_minus_one_is_last_for_token_locations_only() -> None:
    assert parse_site("attn:3/pos:-1").id == "attn:3/pos:last"
    assert parse_site("layer:5/pos:-1").id == "layer:5/pos:-1"
    assert parse_token_location("head:1.0/pos:-1") == TokenLocation("head", 1, "last", 0)
    assert parse_token_location("layer:2") is None


@pytest.mark.parametrize("site_id", ["resid:3", "resid:x/pos:1", "head:3/pos:1",
                                     "resid:1/pos:-2", "resid:1/pos:Last", "attn:1.2/pos:0"])
def test_bad_token_site_ids_are_refused(site_id: str) -> None:
    with pytest.raises(SiteError) as error:
        parse_site(site_id, {"resid:0/pos:0": 4})
    assert error.value.where == site_id


def test_token_sites_filter_by_component_block_and_position() -> None:
    widths = {f"{c}:{b}/pos:{p}": 4 for b in range(2) for c in ("attn", "resid")
              for p in ("0", "last")}
    assert is_token_net(widths) and not is_token_net(WIDTHS)
    sites = token_sites(widths, ["resid"], positions=["last"])
    assert [s.id for s in sites] == ["resid:0/pos:last", "resid:1/pos:last"]


def test_pca_prefixes_are_the_top_1_2_4_directions_and_the_whole_parent() -> None:
    whole = Site("layer:2", "pca", 0, 12)
    assert [s.id for s in pca_prefix_sites([whole])] == [
        "layer:2/pca:1", "layer:2/pca:2", "layer:2/pca:4", "layer:2/pca:8", "layer:2/pca:12"]
    band = Site("layer:2", "pca", 4, 8)  # a PCA parent: prefixes from its own first direction
    assert [s.id for s in pca_prefix_sites([band])] == [
        "layer:2/pca:4-4", "layer:2/pca:4-5", "layer:2/pca:4-7"]
    with pytest.raises(SiteError):
        pca_prefix_sites([Site("layer:2", "dims", 0, 4)])
