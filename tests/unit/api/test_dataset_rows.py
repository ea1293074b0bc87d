"""JSONL uploads are counted row by row as they stream: a long row or too many rows is
refused naming its line, whatever the chunking."""

from __future__ import annotations

import pytest

from api.routes.datasets import RowCounter
from core.errors import DatasetError


def feed_all(counter: RowCounter, data: bytes, chunk: int) -> None:
    for start in range(0, len(data), chunk):
        counter.feed(data[start:start + chunk])


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_a_row_over_the_limit_is_named_by_its_line(chunk: int) -> None:
    data = b"short\n" * 3 + b"x" * 101 + b"\nshort\n"
    with pytest.raises(DatasetError) as refused:
        feed_all(RowCounter("rows.jsonl", max_row_bytes=100, max_rows=10), data, chunk)
    assert refused.value.where == "rows.jsonl:4"


@pytest.mark.parametrize("chunk", [1, 5, 10_000])
def test_rows_at_the_limit_pass_and_one_more_is_refused(chunk: int) -> None:
    feed_all(RowCounter("rows.jsonl", 100, max_rows=3), b"a\nb\nc\n", chunk)
    for data in (b"a\nb\nc\nd\n", b"a\nb\nc\nd"):
        with pytest.raises(DatasetError) as refused:
            feed_all(RowCounter("rows.jsonl", 100, max_rows=3), data, chunk)
        assert refused.value.where == "rows.jsonl:4"
