"""Counterfactual datasets as JSONL: one shared (base, source) pair per row.

A row is ``{"base": x, "source": x, "base_label": y, "counterfactual_labels": {var: y}}``
where ``x`` is a number or nested list of numbers of the net input shape and ``y`` is an
int (one output head) or a list of ints (one per head). For a net with a tokenizer ``x`` may
be text, tokenized with the net's tokenizer (``tokenize``); ``check_dataset_bytes`` checks
an upload with or without its net. Every refusal names ``<file>:<line>``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.causal.bank import Banks, PairBank
from core.errors import DatasetError, PlotError
from core.spec import PairsSpec

ROW_KEYS = ("base", "source", "base_label", "counterfactual_labels")

Tokenize = Callable[[str], list[int]]
"""A net's text encoder: text -> its input_shape token ids (padded)."""


@dataclass
class _Layout:
    """What every row must agree on: given up front, or learnt from the first row."""

    input_shape: tuple[int, ...] | None
    num_heads: int | None
    num_classes: int | None
    variables: tuple[str, ...] | None = None
    input_origin: str = "the net input shape"
    heads_origin: str = "the net output shape"
    input_dtype: torch.dtype = torch.float32
    tokenize: Tokenize | None = None
    defer_text: bool = False  # without ``tokenize``: check text inputs, tokenize them later
    label_names: tuple[str, ...] = ()  # the net's class names: a label may be given by name
    text: bool | None = None  # whether the inputs are text (None before the first one)
    rows: list[tuple[list[float], list[float], list[int], dict[str, list[int]]]] = field(
        default_factory=list
    )


def read_dataset(
    path_or_lines: str | Path | Iterable[str],
    input_shape: tuple[int, ...] | None = None,
    output_shape: tuple[int, int] | None = None,
    name: str | None = None,
    input_dtype: torch.dtype = torch.float32,
    tokenize: Tokenize | None = None,
    label_names: Sequence[str] = (),
) -> PairBank:
    """Read a counterfactual JSONL dataset into a PairBank.

    Args:
        path_or_lines: a file path, or the lines themselves (then ``name`` labels them).
        input_shape: the net input shape every base and source must have; when omitted,
            every row must match the first.
        output_shape: (O heads, C classes) of the net; labels must have O heads and lie in
            [0, C). When omitted, every row must have the first row's head count.
        name: what ``where`` calls the lines (default: the path, else ``dataset``); a
            service passes the dataset's name relative to its data root.
        input_dtype: dtype of the inputs; an integer dtype (token ids) refuses fractions.
        tokenize: the net's text encoder; with it a row's base and source may be text.
        label_names: the net's class names (``InterventableNet.label_names``): a label may
            then be a name (``"B"``) as well as an index.

    Returns:
        A PairBank with base/source (P, *input_shape) in ``input_dtype`` and labels (P, O) long, the
        variables in the first row's order.

    Raises:
        DatasetError: ``where`` is ``<file>:<line>`` of the first bad row (or the file for an
            unreadable or empty one); the message says what is wrong.
    """
    if isinstance(path_or_lines, str | Path):
        path = Path(path_or_lines)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DatasetError(f"cannot read the dataset: {error.strerror}",
                               name or str(path)) from None
        return parse_dataset_bytes(data, name or str(path), input_shape, output_shape,
                                   input_dtype, tokenize, label_names)
    return _parse_lines(path_or_lines, name or "dataset", input_shape, output_shape,
                        input_dtype, tokenize, label_names)


def parse_dataset_bytes(
    data: bytes,
    name: str,
    input_shape: tuple[int, ...] | None = None,
    output_shape: tuple[int, int] | None = None,
    input_dtype: torch.dtype = torch.float32,
    tokenize: Tokenize | None = None,
    label_names: Sequence[str] = (),
) -> PairBank:
    """Parse an uploaded JSONL dataset (UTF-8 bytes) named ``name``; see ``read_dataset``.

    Raises:
        DatasetError: the bytes are not UTF-8, or a row is bad (``where`` = ``name:line``).
    """
    return _parse_lines(_lines(data, name), name, input_shape, output_shape, input_dtype,
                        tokenize, label_names)


def write_dataset(path: str | Path, bank: PairBank, words: Sequence[str] | None = None
                  ) -> None:
    """Write ``bank`` as JSONL rows that ``read_dataset`` reads back to an equal bank.

    Args:
        words: for a bank of token ids, each id's word: the inputs are written as text (the
            words joined by spaces), what a user uploads for a net with a tokenizer.
    """
    single = bank.base_labels.shape[-1] == 1

    def label(y: list[int]) -> int | list[int]:
        return y[0] if single else y

    def inputs(rows: Tensor) -> list[Any]:
        if words is None:
            return list(rows.tolist())
        return [" ".join(words[i] for i in row) for row in rows.tolist()]

    base, source = inputs(bank.base), inputs(bank.source)
    base_labels = bank.base_labels.tolist()
    counterfactual = {v: y.tolist() for v, y in bank.counterfactual_labels.items()}
    with Path(path).open("w", encoding="utf-8") as file:
        for i in range(bank.size):
            row = {
                "base": base[i],
                "source": source[i],
                "base_label": label(base_labels[i]),
                "counterfactual_labels": {v: label(y[i]) for v, y in counterfactual.items()},
            }
            file.write(json.dumps(row) + "\n")


def check_dataset_scheme(pairs: PairsSpec) -> None:
    """Refuse a pair scheme for a dataset (its rows are split as they are).

    Raises:
        DatasetError: ``pairs.scheme`` is not ``balanced``.
    """
    if pairs.scheme != "balanced":
        raise DatasetError("a dataset's rows are split as they are; pairs.scheme "
                           f"{pairs.scheme!r} builds a built-in task's banks", "pairs.scheme")


def split_dataset(bank: PairBank, pairs: PairsSpec) -> Banks:
    """Disjoint random fit / calibration / test subsets of a dataset, drawn with pairs.seed.

    Args:
        bank: every row of the dataset.
        pairs: the bank sizes and the seed.

    Returns:
        Banks of sizes ``pairs.fit``, ``pairs.calibration``, ``pairs.test``, no row shared.

    Raises:
        DatasetError: the dataset has fewer rows than the three banks need, or the spec
            asks for a pair scheme (a dataset's rows are split as they are).
    """
    check_dataset_scheme(pairs)
    sizes = (pairs.fit, pairs.calibration, pairs.test)
    need = sum(sizes)
    if bank.size < need:
        raise DatasetError(
            f"the dataset has {bank.size} rows but fit + calibration + test need {need} "
            f"({sizes[0]} + {sizes[1]} + {sizes[2]})",
            "pairs",
        )
    order = torch.randperm(bank.size, generator=torch.Generator().manual_seed(pairs.seed))
    fit, calibration, test = torch.split(order[:need], list(sizes))
    return Banks(fit=bank.subset(fit), calibration=bank.subset(calibration),
                 test=bank.subset(test))


@dataclass(frozen=True)
class DatasetSummary:
    """What a service records of a checked dataset.

    Attributes:
        rows: its non-empty rows.
        variables: the variables of its counterfactual labels, in the first row's order.
        text: whether its inputs are text (to tokenize with a net's tokenizer).
    """

    rows: int
    variables: tuple[str, ...]
    text: bool


def check_dataset_bytes(
    data: bytes,
    name: str,
    tokenize: Tokenize | None = None,
    input_shape: tuple[int, ...] | None = None,
    output_shape: tuple[int, int] | None = None,
    defer_text: bool = True,
    label_names: Sequence[str] = (),
) -> DatasetSummary:
    """Check every row of an uploaded dataset. With ``tokenize`` (the net it is meant for)
    text inputs are tokenized and must fit, and labels given by name must be among
    ``label_names``. Without it, ``defer_text`` checks they are non-empty text, all of a
    dataset's inputs text or all numbers, to tokenize (and resolve named labels) when a job
    names its net (else text is refused). See ``read_dataset`` for the rest.

    Raises:
        DatasetError: ``where`` = ``name:line`` of the first bad row.
    """
    layout = _read_layout(_lines(data, name), name, input_shape, output_shape,
                          torch.long if tokenize is not None else torch.float32, tokenize,
                          defer_text=defer_text and tokenize is None,
                          label_names=label_names)
    return DatasetSummary(len(layout.rows), layout.variables or (), bool(layout.text))


def _lines(data: bytes, name: str) -> Iterable[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(f"not UTF-8 text (byte {error.start})", name) from None
    # split on newlines only: str.splitlines would also break at U+2028 inside strings
    return (line.removesuffix("\r") for line in text.split("\n"))


def _read_layout(
    lines: Iterable[str],
    name: str,
    input_shape: tuple[int, ...] | None,
    output_shape: tuple[int, int] | None,
    input_dtype: torch.dtype = torch.float32,
    tokenize: Tokenize | None = None,
    defer_text: bool = False,
    label_names: Sequence[str] = (),
) -> _Layout:
    """Every row parsed and checked into a layout holding them."""
    layout = _Layout(
        input_shape=tuple(input_shape) if input_shape is not None else None,
        num_heads=output_shape[0] if output_shape is not None else None,
        num_classes=output_shape[1] if output_shape is not None else None,
        input_dtype=input_dtype,
        tokenize=tokenize,
        defer_text=defer_text,
        label_names=tuple(label_names),
    )
    for number, line in enumerate(lines, start=1):
        if line.strip():
            _parse_row(line, f"{name}:{number}", layout)
    if not layout.rows or layout.input_shape is None or layout.variables is None:
        raise DatasetError("the dataset has no rows", name)
    return layout


def _parse_lines(
    lines: Iterable[str],
    name: str,
    input_shape: tuple[int, ...] | None,
    output_shape: tuple[int, int] | None,
    input_dtype: torch.dtype = torch.float32,
    tokenize: Tokenize | None = None,
    label_names: Sequence[str] = (),
) -> PairBank:
    layout = _read_layout(lines, name, input_shape, output_shape, input_dtype, tokenize,
                          label_names=label_names)
    assert layout.input_shape is not None and layout.variables is not None
    shape = (len(layout.rows), *layout.input_shape)
    base, source, base_labels, counterfactual = zip(*layout.rows, strict=True)
    return PairBank(
        base=torch.tensor(base, dtype=torch.float64).to(layout.input_dtype).reshape(shape),
        source=torch.tensor(source, dtype=torch.float64).to(layout.input_dtype).reshape(shape),
        base_labels=torch.tensor(base_labels, dtype=torch.long),
        counterfactual_labels={
            v: torch.tensor([row[v] for row in counterfactual], dtype=torch.long)
            for v in layout.variables
        },
    )


def _parse_row(line: str, where: str, layout: _Layout) -> None:
    """Check one row against ``layout`` (learning it from the first row) and append it."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise DatasetError(f"invalid JSON: {error.msg} (column {error.colno})", where) from None
    if not isinstance(row, dict):
        raise DatasetError(f"a row must be a JSON object, got {_json_type(row)}", where)
    for key in ROW_KEYS:
        if key not in row:
            raise DatasetError(f"missing key {key!r}", where)
    for key in row:
        if key not in ROW_KEYS:
            raise DatasetError(f"unknown key {key!r} (a row has {', '.join(ROW_KEYS)})", where)
    base = _parse_input(row["base"], "base", where, layout)
    source = _parse_input(row["source"], "source", where, layout)
    base_label = _parse_label(row["base_label"], "base_label", where, layout)
    labels = row["counterfactual_labels"]
    if not isinstance(labels, dict) or not labels:
        raise DatasetError("counterfactual_labels must be a non-empty object", where)
    variables = tuple(labels)
    if layout.variables is None:
        layout.variables = variables
    elif set(variables) != set(layout.variables):
        raise DatasetError(
            f"counterfactual_labels has variables {sorted(variables)} but the first row has "
            f"{sorted(layout.variables)}",
            where,
        )
    counterfactual = {
        v: _parse_label(labels[v], f"counterfactual_labels.{v}", where, layout)
        for v in layout.variables
    }
    layout.rows.append((base, source, base_label, counterfactual))


def _parse_input(value: Any, key: str, where: str, layout: _Layout) -> list[float]:
    """The flat numbers of one input (text tokenized first), its shape checked."""
    is_text = isinstance(value, str)
    if layout.text is None:
        layout.text = is_text
    elif is_text != layout.text:
        if layout.defer_text:  # a stand-in and a number list cannot share a shape
            kinds = ("numbers", "text")
            raise DatasetError(f"{key} is {kinds[is_text]} but the first row's inputs are "
                               f"{kinds[layout.text]}", where)
        layout.text = True
    if is_text and layout.tokenize is None and layout.defer_text:
        if not value.strip():
            raise DatasetError(f"{key}: empty text", where)
        value = 0  # stands for the text until a net's tokenizer reads it
    elif is_text:
        if layout.tokenize is None:
            raise DatasetError(f"{key}: text needs a net with a tokenizer", where)
        try:
            value = layout.tokenize(value)
        except PlotError as error:
            raise DatasetError(f"{key}: {error.message}", where) from None
    try:
        shape, flat = _flatten(value)
    except ValueError as error:
        raise DatasetError(f"{key}: {error}", where) from None
    if not layout.input_dtype.is_floating_point and not all(x.is_integer() for x in flat):
        raise DatasetError(f"{key}: the net takes token ids, found a fraction", where)
    if layout.input_shape is None:
        layout.input_shape = shape
        layout.input_origin = f"the first row ({where})"
    elif shape != layout.input_shape:
        raise DatasetError(
            f"{key} has shape {list(shape)} but {layout.input_origin} is "
            f"{list(layout.input_shape)}",
            where,
        )
    return flat


def _flatten(value: Any) -> tuple[tuple[int, ...], list[float]]:
    """(shape, flat numbers) of a number or a nested, rectangular list of numbers."""
    if isinstance(value, list):
        if not value:
            raise ValueError("an input cannot hold an empty list")
        parts = [_flatten(item) for item in value]
        inner = parts[0][0]
        if any(shape != inner for shape, _ in parts):
            raise ValueError("a ragged nested list (rows of different shapes)")
        return (len(value), *inner), [x for _, flat in parts for x in flat]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number or a list of numbers, got {_json_type(value)}")
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {value}")
    return (), [float(value)]


def _parse_label(value: Any, key: str, where: str, layout: _Layout) -> list[int]:
    """The heads of one label (an int is one head), checked against the layout; a head
    given by name (a string) is its index among the net's class names."""
    heads = value if isinstance(value, list) else [value]
    if not heads:
        raise DatasetError(f"{key}: a label needs at least one head", where)
    heads = [_named_label(head, key, where, layout) if isinstance(head, str) else head
             for head in heads]
    for head in heads:
        if isinstance(head, bool) or not isinstance(head, int):
            raise DatasetError(f"{key}: non-integer label {json.dumps(head)}", where)
        if head < 0 or (layout.num_classes is not None and head >= layout.num_classes):
            classes = f"{layout.num_classes} classes" if layout.num_classes else "classes 0.."
            raise DatasetError(f"{key}: label {head} out of range of {classes}", where)
    if layout.num_heads is None:
        layout.num_heads = len(heads)
        layout.heads_origin = f"the first row ({where})"
    elif len(heads) != layout.num_heads:
        raise DatasetError(
            f"{key} has {len(heads)} heads but {layout.heads_origin} has {layout.num_heads}",
            where,
        )
    return heads


def _named_label(name: str, key: str, where: str, layout: _Layout) -> int:
    """The index of the class ``name``; while the net is not known yet (an upload whose
    text is tokenized when a job names its net) a stand-in 0, resolved then. A name matches
    exactly, else with surrounding spaces ignored (``"B"`` is the label ``" B"``) when that
    is one label only."""
    if name in layout.label_names:
        return layout.label_names.index(name)
    loose = [i for i, label in enumerate(layout.label_names) if label.strip() == name.strip()]
    if len(loose) == 1:
        return loose[0]
    if layout.label_names:
        raise DatasetError(f"{key}: label {json.dumps(name)} is not one of the net's labels "
                           f"{list(layout.label_names)}", where)
    if layout.defer_text and layout.text:
        if not name.strip():
            raise DatasetError(f"{key}: empty label name", where)
        return 0
    raise DatasetError(f"{key}: label {json.dumps(name)} is a name, but the net's classes "
                       "have none (give the class index)", where)


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
