"""Token positions read from a bank: padding is never a site, one token is one site, a
position the prefix fixes in every pair is no site, and labels show the token the bank
holds there."""

from __future__ import annotations

import torch

from core.level_sites import enumerate_sites
from core.nets.tokenizer import WordTokenizer
from core.nets.transformer import TransformerNet
from core.sites import Site
from core.spec import LevelSpec
from core.token_levels import enumerate_token_sites
from core.token_positions import bank_positions
from tests.unit.core.nets.test_transformer import tiny

WORDS = ["<pad>", *(f"w{i}" for i in range(1, 11)), "Paris"]  # id 11 is the marker token


def net_with_words() -> TransformerNet:
    net = tiny()  # max_len 6, pad 0, "marker" = the token after the first 11
    net.tokenizer = WordTokenizer(WORDS)
    return net


def padded(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor([row + [0] * (6 - len(row)) for row in rows])


def test_padding_is_never_a_site_and_a_shared_token_is_one_site() -> None:
    net = net_with_words()
    base = padded([[1, 11, 3, 4], [2, 11, 5, 6, 7, 8], [3, 11, 9, 1, 2]])
    source = padded([[4, 11, 3, 2, 1], [5, 11, 1, 2], [6, 11, 7, 8, 9, 10]])
    positions = bank_positions(net, base, source)
    assert positions is not None
    # 4 and 5 are padding in some prompt; 2 is the marker's token in every prompt
    assert positions.sites == ("0", "1", "3", "last", "marker")
    sites = enumerate_token_sites(LevelSpec(granularity="position", layer=0), net.widths,
                                  None, positions.sites)
    assert [s.id for s in sites] == ["resid:0/pos:0", "resid:0/pos:1", "resid:0/pos:3",
                                     "resid:0/pos:last", "resid:0/pos:marker"]


def test_prompts_of_one_length_make_the_last_index_the_last_site() -> None:
    net = net_with_words()
    base = padded([[1, 11, 3, 4, 5, 6], [2, 11, 5, 6, 7, 8]])
    source = padded([[4, 11, 3, 2, 1, 9], [5, 11, 1, 2, 3, 4]])
    positions = bank_positions(net, base, source)
    assert positions is not None
    assert "5" not in positions.sites and "last" in positions.sites
    assert positions.sites[:4] == ("0", "1", "3", "4")


def test_a_position_every_pair_shares_the_prefix_of_is_no_site() -> None:
    net = net_with_words()
    base = padded([[1, 11, 3, 4, 5], [2, 11, 5, 6, 7]])
    source = padded([[1, 11, 9, 2, 1], [2, 11, 1, 2, 3]])  # each pair agrees on 0 and 1
    positions = bank_positions(net, base, source)
    assert positions is not None
    assert "0" not in positions.sites and "1" not in positions.sites
    assert "3" in positions.sites


def test_labels_show_the_token_the_bank_holds_and_the_position_alone_where_it_varies(
        ) -> None:
    net = net_with_words()
    base = padded([[1, 11, 3, 4], [2, 11, 5, 6, 7, 8], [3, 11, 9, 1, 2]])
    source = padded([[4, 11, 3, 2, 1], [5, 11, 1, 2], [6, 11, 7, 8, 9, 10]])
    positions = bank_positions(net, base, source)
    assert positions is not None
    labels = positions.site_labels([Site("resid:1/pos:1", "all", 0, 16),
                                    Site("resid:1/pos:last", "pca", 0, 4),
                                    Site("resid:1/pos:0", "all", 0, 16)])
    assert labels == {"resid:1/pos:1": 'resid:1/pos:1 "Paris"',
                      "resid:1/pos:last/pca:4": "resid:1/pos:last/pca:4",
                      "resid:1/pos:0": "resid:1/pos:0"}


def test_a_first_block_level_on_a_token_net_skips_padding_too() -> None:
    net = net_with_words()
    base = padded([[1, 11, 3, 4], [2, 11, 5, 6, 7, 8], [3, 11, 9, 1, 2]])
    source = padded([[4, 11, 3, 2, 1], [5, 11, 1, 2], [6, 11, 7, 8, 9, 10]])
    positions = bank_positions(net, base, source)
    sites = enumerate_sites(LevelSpec(granularity="block", block_size=8), net, None, {},
                            positions)
    held = {s.location.split("/pos:")[1] for s in sites}
    assert held == {"0", "1", "3", "last", "marker"}
    every = enumerate_sites(LevelSpec(granularity="block", block_size=8), net, None, {})
    assert len(every) > len(sites)
