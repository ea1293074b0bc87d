"""A job's memory budget: how many bytes its clean traces may hold on the device, and the
rows per stacked forward that follow from it and the net's width.

``PLOT_MEMORY_BUDGET`` (bytes, or ``"8GiB"``, ``"512MB"``) bounds one job's traces. A level
traces only the locations it needs (``core.nets.base.InterventableNet.trace``); when those
traces, for the three banks, exceed the budget they are kept in host memory (pinned when the
net is on a GPU) and streamed to the device one micro-batch at a time, and on the CPU the
banks are traced one at a time, each re-traced when it is needed again.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from core.errors import PlotError
from core.nets.base import InterventableNet
from core.nets.tokens import TokenNet, streams_needed

BUDGET_ENV = "PLOT_MEMORY_BUDGET"
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
DEFAULT_ROWS = 65536  # rows per stacked forward without a budget, as before there was one


class BudgetError(PlotError):
    """A memory budget that cannot be read."""


def parse_bytes(value: str | int, where: str = BUDGET_ENV) -> int:
    """``1073741824``, ``"1GiB"``, ``"512 MB"`` -> bytes.

    Raises:
        BudgetError: naming ``where`` when the value is not a positive size.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in UNITS:
            raise BudgetError(f"{value!r} is not a size (bytes, or like 8GiB, 512MB)", where)
        size = int(float(match.group(1)) * UNITS[match.group(2).lower()])
    if size <= 0:
        raise BudgetError("must be a positive size", where)
    return size


def budget_from(environment: Mapping[str, str]) -> int | None:
    """The budget ``PLOT_MEMORY_BUDGET`` sets in ``environment`` (the process's, read at the
    edges: the CLI and the workers), or None (unbounded)."""
    value = environment.get(BUDGET_ENV, "").strip()
    return parse_bytes(value) if value else None


def rows_for_budget(net: InterventableNet, budget: int | None, default: int = DEFAULT_ROWS
                    ) -> int:
    """Rows per stacked forward: ``default`` (already divided by the positions a row
    carries), capped so that a micro-batch's working set is at most a quarter of the budget.
    """
    if budget is None:
        return default
    return max(1, min(default, budget // 4 // net.working_bytes_per_row))


def trace_bytes_per_example(net: InterventableNet, locations: Collection[str] | None) -> int:
    """Bytes one example's clean trace keeps for ``locations`` (None: every location)."""
    if isinstance(net, TokenNet):
        kept = streams_needed(locations, len(_blocks(net)))
        element = next(net.parameters()).element_size()
        heads = sum(width for loc, width in net.widths.items() if loc.startswith("head:0.")
                    and loc.endswith("/pos:0"))
        return (len(kept.resid) * _d_model(net) + len(kept.z) * heads) * net.max_len * element
    return 4 * sum(net.widths.values())


def _blocks(net: TokenNet) -> list[int]:
    return sorted({int(loc.split("/")[0].split(":")[1].split(".")[0]) for loc in net.widths})


def _d_model(net: TokenNet) -> int:
    return max(width for loc, width in net.widths.items() if loc.startswith("resid:"))


def fits(trace_bytes: int, budget: int | None) -> bool:
    """Whether traces of ``trace_bytes`` fit the budget (always, without one)."""
    return budget is None or trace_bytes <= budget
