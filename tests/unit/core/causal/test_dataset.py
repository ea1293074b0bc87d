"""Counterfactual JSONL datasets: round trips, splits, and every refused row naming its line."""

from __future__ import annotations

import json

import pytest
import torch

from core.causal.addition import BinaryAddition
from core.causal.bank import PairBank
from core.causal.dataset import (
    check_dataset_bytes,
    parse_dataset_bytes,
    read_dataset,
    split_dataset,
    write_dataset,
)
from core.causal.heq import HierarchicalEquality
from core.errors import DatasetError
from core.spec import PairsSpec


def assert_same_bank(one: PairBank, two: PairBank) -> None:
    torch.testing.assert_close(one.base, two.base)
    torch.testing.assert_close(one.source, two.source)
    torch.testing.assert_close(one.base_labels, two.base_labels)
    assert one.variables == two.variables
    for v in one.variables:
        torch.testing.assert_close(one.counterfactual_labels[v], two.counterfactual_labels[v])


@pytest.mark.parametrize("task", [HierarchicalEquality(), BinaryAddition()], ids=lambda t: t.name)
def test_write_then_read_round_trips_exactly(task, tmp_path):
    bank = task.sample_bank(40, torch.Generator().manual_seed(0), 0.5)
    path = tmp_path / "pairs.jsonl"
    write_dataset(path, bank)
    assert len(path.read_text().splitlines()) == 40
    assert_same_bank(read_dataset(path, task.input_shape, task.output_shape), bank)
    assert_same_bank(read_dataset(str(path)), bank)
    assert_same_bank(parse_dataset_bytes(path.read_bytes(), "upload.jsonl"), bank)


def test_single_head_labels_are_written_as_ints(tmp_path):
    bank = HierarchicalEquality().sample_bank(3, torch.Generator().manual_seed(0), 0.5)
    write_dataset(tmp_path / "d.jsonl", bank)
    row = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert isinstance(row["base_label"], int)
    assert set(row["counterfactual_labels"]) == {"WX", "YZ"}


def row(**change) -> str:
    data = {
        "base": [[0, 1], [1, 1]],
        "source": [[1, 0], [0, 0]],
        "base_label": [1, 0, 1],
        "counterfactual_labels": {"C1": [0, 1, 1]},
    }
    data.update(change)
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def test_lines_are_read_with_blank_lines_skipped():
    bank = read_dataset([row(), "", row(base=[[1, 1], [0, 0]]), "  "])
    assert bank.size == 2 and bank.base.shape == (2, 2, 2) and bank.base.dtype == torch.float32
    torch.testing.assert_close(bank.base_labels, torch.tensor([[1, 0, 1], [1, 0, 1]]))
    assert bank.variables == ("C1",)


BAD_ROWS = [
    ('{"base": [1, 2', "invalid JSON"),
    ("[1, 2, 3]", "must be a JSON object, got an array"),
    (row(source=...), "missing key 'source'"),
    (row(weight=3), "unknown key 'weight'"),
    (row(base=[[0, 1, 0], [1, 1, 0]]), "base has shape [2, 3] but the first row"),
    (row(source=[[0, 1], [1]]), "ragged"),
    (row(source=[[0, "a"], [1, 1]]), "expected a number"),
    (row(base_label=[1, 0.5, 1]), "non-integer label 0.5"),
    (row(base_label=[1, True, 1]), "non-integer label true"),
    (row(counterfactual_labels={"C1": [0, 1, -1]}), "label -1 out of range"),
    (row(counterfactual_labels={"C2": [0, 1, 1]}), "variables ['C2'] but the first row has"),
    (row(counterfactual_labels={"C1": [0, 1]}), "has 2 heads but the first row"),
    (row(base_label=1), "base_label has 1 heads"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS, ids=[r for _, r in BAD_ROWS])
def test_bad_row_is_refused_naming_its_line_and_reason(bad, reason):
    lines = [row(), "", bad, row()]
    with pytest.raises(DatasetError) as info:
        read_dataset(lines, name="cf.jsonl")
    assert info.value.where == "cf.jsonl:3"
    assert reason in info.value.message


def test_given_shapes_are_enforced(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(row() + "\n")
    with pytest.raises(DatasetError, match="the net input shape is \\[4, 2\\]") as info:
        read_dataset(path, input_shape=(4, 2))
    assert info.value.where == f"{path}:1"
    with pytest.raises(DatasetError, match="out of range of 1 classes"):
        read_dataset(path, output_shape=(3, 1))
    with pytest.raises(DatasetError, match="3 heads but the net output shape has 5"):
        read_dataset(path, output_shape=(5, 2))
    assert read_dataset(path, input_shape=(2, 2), output_shape=(3, 2)).size == 1


def test_uploads_that_are_empty_or_not_utf8_are_refused():
    with pytest.raises(DatasetError, match="no rows") as info:
        parse_dataset_bytes(b"\n\n", "up.jsonl")
    assert info.value.where == "up.jsonl"
    with pytest.raises(DatasetError, match="UTF-8"):
        parse_dataset_bytes(b"\xff\xfe", "up.jsonl")
    with pytest.raises(DatasetError) as info:
        parse_dataset_bytes((row() + "\r\n" + "{}" + "\r\n").encode(), "up.jsonl")
    assert info.value.where == "up.jsonl:2"


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_dataset(tmp_path / "absent.jsonl")


def numbered_bank(size: int) -> PairBank:
    ids = torch.arange(size, dtype=torch.float32).unsqueeze(-1)
    labels = torch.zeros(size, 1, dtype=torch.long)
    return PairBank(base=ids, source=ids, base_labels=labels, counterfactual_labels={"V": labels})


def test_split_draws_disjoint_seeded_subsets():
    bank = numbered_bank(100)
    pairs = PairsSpec(fit=30, calibration=20, test=10, seed=5)
    banks = split_dataset(bank, pairs)
    ids = [set(b.base[:, 0].long().tolist()) for b in (banks.fit, banks.calibration, banks.test)]
    assert [len(s) for s in ids] == [30, 20, 10]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert ids[0] != set(range(30))  # random, not the first rows
    torch.testing.assert_close(split_dataset(bank, pairs).test.base, banks.test.base)
    other = split_dataset(bank, PairsSpec(fit=30, calibration=20, test=10, seed=6))
    assert not torch.equal(other.fit.base, banks.fit.base)


def test_split_refuses_too_small_dataset_stating_counts():
    with pytest.raises(DatasetError) as info:
        split_dataset(numbered_bank(50), PairsSpec(fit=30, calibration=20, test=10))
    assert "50 rows" in info.value.message and "60" in info.value.message
    assert "30 + 20 + 10" in info.value.message


def _token_row(base: object, source: object = None) -> str:
    return json.dumps({"base": base, "source": source if source is not None else base,
                       "base_label": 0, "counterfactual_labels": {"v": 1}})


def test_token_ids_and_text_rows_read_as_long_inputs() -> None:
    def tokenize(text: str) -> list[int]:
        return [len(word) for word in text.split()]

    bank = read_dataset([_token_row([1, 2, 3]), _token_row("a bb ccc")], input_shape=(3,),
                        output_shape=(1, 2), input_dtype=torch.long, tokenize=tokenize)
    assert bank.base.dtype == torch.long
    assert bank.base.tolist() == [[1, 2, 3], [1, 2, 3]]


@pytest.mark.parametrize(("row", "reason"), [
    (_token_row([1, 2.5, 3]), "token ids, found a fraction"),
    (_token_row("a b c"), "text needs a net with a tokenizer"),
])
def test_bad_token_rows_are_named_by_line(row: str, reason: str) -> None:
    with pytest.raises(DatasetError, match=reason) as error:
        read_dataset([row], input_shape=(3,), output_shape=(1, 2), input_dtype=torch.long)
    assert error.value.where == "dataset:1"


def _named_row(base: str, base_label: object, answer: object) -> str:
    return json.dumps({"base": base, "source": base, "base_label": base_label,
                       "counterfactual_labels": {"v": answer}})


def test_labels_may_be_given_by_the_nets_class_names() -> None:
    def tokenize(text: str) -> list[int]:
        return [len(word) for word in text.split()]

    bank = read_dataset([_named_row("a bb ccc", "B", "C"), _named_row("a b c", 0, [" B"])],
                        input_shape=(3,), output_shape=(1, 3), input_dtype=torch.long,
                        tokenize=tokenize, label_names=("A", " B", "C"))
    assert bank.base_labels.tolist() == [[1], [0]]
    assert bank.counterfactual_labels["v"].tolist() == [[2], [1]]


@pytest.mark.parametrize(("names", "row", "reason"), [
    (("A", "B"), _named_row("a b", "Z", 0), r'counterfactual_labels|label "Z" is not one of'),
    ((), _named_row("a b", 0, "B"), "is a name, but the net's classes have none"),
])
def test_a_label_name_the_net_does_not_have_is_refused_by_line(
        names: tuple[str, ...], row: str, reason: str) -> None:
    def tokenize(text: str) -> list[int]:
        return [len(word) for word in text.split()]

    with pytest.raises(DatasetError, match=reason) as error:
        read_dataset([_named_row("a b", 0, 1), row], input_shape=(2,), output_shape=(1, 2),
                     input_dtype=torch.long, tokenize=tokenize, label_names=names)
    assert error.value.where == "dataset:2"


def test_an_upload_without_its_net_defers_named_labels_only_with_text_inputs() -> None:
    text = (_named_row("a b", "B", "A") + "\n").encode()
    assert check_dataset_bytes(text, "up.jsonl").text
    numbers = (json.dumps({"base": [1.0], "source": [2.0], "base_label": "B",
                           "counterfactual_labels": {"v": 0}}) + "\n").encode()
    with pytest.raises(DatasetError, match="is a name") as error:
        check_dataset_bytes(numbers, "up.jsonl")
    assert error.value.where == "up.jsonl:1"
