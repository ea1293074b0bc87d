"""YAML job specs from the dashboard: nesting measured by a linear scan before the parser
runs (PyYAML's time grows super-linearly with depth), aliases refused, one mapping out."""

from __future__ import annotations

from typing import Any

import yaml

from api.errors import InputError

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when it is built in
# Composing and building the objects costs far more than the event pass (libyaml composes a
# whole document in one call that holds the GIL): a spec has a few hundred nodes, so a
# document past this many is refused after the cheap event pass.
MAX_SPEC_NODES = 20_000


def measure_yaml_depth(text: str) -> tuple[int, int]:
    """An upper bound on the nesting of ``text`` and the first line where it is reached.

    Counts open flow brackets (``[``, ``{``; quotes are not tracked, so brackets inside
    strings count too: a bound, never an underestimate) plus the block levels: the stack of
    indentations and the ``- `` items that open a sequence on the same line. One pass.

    Returns:
        (depth, 1-based line of the deepest point).
    """
    deepest, deepest_line, flow = 0, 1, 0
    indents: list[int] = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        while indents and indents[-1] > indent:
            indents.pop()
        if not indents or indents[-1] < indent:
            indents.append(indent)
        dashes = 0
        while stripped.startswith(("- ", "-\t")):
            dashes += 1
            stripped = stripped[2:].lstrip()
        peak = flow
        for char in stripped:
            if char in "[{":
                flow += 1
                peak = max(peak, flow)
            elif char in "]}":
                flow = max(flow - 1, 0)
        depth = len(indents) + dashes + peak
        if depth > deepest:
            deepest, deepest_line = depth, number
    return deepest, deepest_line


def parse_yaml_spec(data: bytes, max_depth: int) -> dict[str, Any]:
    """One YAML mapping from UTF-8 ``data``; blocking (run it in a worker thread).

    Raises:
        InputError: not UTF-8, nested deeper than ``max_depth``, over ``MAX_SPEC_NODES``
            nodes, not YAML, not a mapping, or uses aliases (which could expand a small
            document into a huge one once it is turned into JSON).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the spec is not UTF-8 text", "body") from None
    depth, line = measure_yaml_depth(text)
    if depth > max_depth:
        raise InputError(f"nested {depth} levels deep; a spec may nest at most {max_depth} "
                         "(PLOT_MAX_YAML_DEPTH)", f"line {line}")
    try:
        for count, event in enumerate(yaml.parse(text, Loader=SafeLoader)):
            mark = event.start_mark
            where = f"line {mark.line + 1}" if mark else "body"
            if isinstance(event, yaml.AliasEvent):
                raise InputError("anchors and aliases are not supported in a spec", where)
            if count > MAX_SPEC_NODES:
                raise InputError(f"more than {MAX_SPEC_NODES} YAML nodes in a spec", where)
        loaded = yaml.load(text, Loader=SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else "body"
        raise InputError(f"not valid YAML: {error.problem or error}", where) from None
    except (yaml.YAMLError, RecursionError) as error:
        raise InputError(f"not valid YAML: {error}", "body") from None
    if not isinstance(loaded, dict):
        raise InputError(f"a job spec is a mapping, got {type(loaded).__name__}", "body")
    return {str(key): value for key, value in loaded.items()}
