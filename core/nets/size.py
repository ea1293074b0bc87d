"""The size of a net read from its config alone: parameters, bytes and activation widths.

Everything here is arithmetic on the parsed ``config.json`` (or a Hugging Face config), so a
net too large for the deployment is refused before any tensor is allocated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ModelLoadError

# Bytes per parameter of a Hugging Face ``torch_dtype``; anything else counts as float32.
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


@dataclass(frozen=True)
class NetLimits:
    """The largest net a deployment builds (defaults: one GPU of 80–140 GB).

    Attributes:
        max_parameters: parameters of the whole net (8e9: an 8B model, 32 GB in float32).
        max_width: any one width (an MLP layer, a GRU state, ``d_model``, ``d_mlp``,
            ``hidden_size``, ``intermediate_size``): 65,536.
        max_vocab: ``vocab_size`` (the largest released tokenizers hold ~256k): 2**20.
        max_depth: layers, GRU steps or transformer blocks: 1,024.
        max_len: positions of a token net: 131,072.
    """

    max_parameters: int = 8_000_000_000
    max_width: int = 65_536
    max_vocab: int = 1 << 20
    max_depth: int = 1024
    max_len: int = 131_072


DEFAULT_NET_LIMITS = NetLimits()


@dataclass(frozen=True)
class NetSize:
    """What a net config costs and what its activations look like.

    Attributes:
        parameters: the estimated parameter count.
        bytes: parameters × bytes per parameter.
        largest_field: the config field whose term dominates ``parameters``.
        locations: coarse locations per token (MLP layers, GRU steps, token-net locations
            at one position).
        stream_width: coordinates a trace keeps per example and token (the sum of the
            MLP / GRU widths; for token nets the residual stream around every block and
            every head's output, (2L + 1)·D).
        max_width: the widest location.
        tokens: positions per example (1 for MLP and GRU).
        arch: ``mlp``, ``gru``, ``transformer`` or ``hf``.
        blocks, d_model: a token net's blocks and residual width (0 for MLP and GRU).
    """

    parameters: int
    bytes: int
    largest_field: str
    locations: int
    stream_width: int
    max_width: int
    tokens: int
    arch: str
    blocks: int = 0
    d_model: int = 0


def _mlp_size(config: Mapping[str, Any]) -> NetSize:
    hidden = [int(d) for d in config["hidden_dims"]]
    dims = [int(config["input_dim"]), *hidden, int(config["num_classes"])]
    names = ["input_dim", *(f"hidden_dims.{i}" for i in range(len(hidden))), "num_classes"]
    terms: dict[str, int] = {}
    for i in range(len(dims) - 1):  # linear i: dims[i] -> dims[i + 1], weight and bias
        field = names[i] if dims[i] > dims[i + 1] else names[i + 1]
        terms[field] = terms.get(field, 0) + (dims[i] + 1) * dims[i + 1]
    total = sum(terms.values())
    return NetSize(total, 4 * total, max(terms, key=terms.__getitem__), len(hidden),
                   sum(hidden), max(hidden), 1, "mlp")


def _gru_size(config: Mapping[str, Any]) -> NetSize:
    inputs, hidden = int(config["input_size"]), int(config["hidden_size"])
    steps, classes = int(config["num_steps"]), int(config["num_classes"])
    terms = {
        "input_size": 3 * inputs * hidden,
        "hidden_size": 3 * hidden * hidden + 6 * hidden,
        "num_steps": (steps + 1) * (hidden + 1) * classes,  # one head per step + final
    }
    total = sum(terms.values())
    return NetSize(total, 4 * total, max(terms, key=terms.__getitem__), steps,
                   steps * hidden, hidden, 1, "gru")


def _transformer_size(config: Mapping[str, Any]) -> NetSize:
    vocab, width = int(config["vocab_size"]), int(config["d_model"])
    layers, mlp, length = int(config["n_layers"]), int(config["d_mlp"]), int(config["max_len"])
    block = 4 * width * width + 2 * width * mlp + 9 * width + mlp  # qkv, out, fc1, fc2, norms
    terms = {
        "vocab_size": 2 * vocab * width,  # embedding and unembedding
        "max_len": length * width,
        "n_layers": layers * block,
    }
    total = sum(terms.values()) + 2 * width
    heads = int(config["n_heads"])
    return NetSize(total, 4 * total, max(terms, key=terms.__getitem__),
                   layers * (heads + 3), (2 * layers + 1) * width, width, length,
                   "transformer", layers, width)


def _hf_size(config: Mapping[str, Any]) -> NetSize:
    """A Hugging Face config: embeddings plus L blocks of attention (4h²) and a gated MLP
    (3·h·intermediate); fields that are absent count as zero."""
    hidden = _int_field(config, "hidden_size", "n_embd", "d_model")
    layers = _int_field(config, "num_hidden_layers", "n_layer", "num_layers")
    inner = _int_field(config, "intermediate_size", "n_inner") or 4 * hidden
    vocab = _int_field(config, "vocab_size")
    tied = bool(config.get("tie_word_embeddings", True))
    terms = {
        "vocab_size": (1 if tied else 2) * vocab * hidden,
        "num_hidden_layers": layers * (4 * hidden * hidden + 3 * hidden * inner),
    }
    total = sum(terms.values())
    per = _DTYPE_BYTES.get(str(config.get("torch_dtype", "float32")), 4)
    length = _int_field(config, "max_len") or 64
    return NetSize(total, per * total, max(terms, key=terms.__getitem__), 3 * layers,
                   (2 * layers + 1) * hidden, max(hidden, inner), length, "hf", layers,
                   hidden)


def _int_field(config: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


_SIZERS = {"mlp": _mlp_size, "gru": _gru_size, "transformer": _transformer_size}

# arch -> (field, which limit) checked before the parameter count
_BOUNDS: dict[str, tuple[tuple[str, str], ...]] = {
    "mlp": (("input_dim", "max_width"), ("hidden_dims", "max_width"),
            ("num_classes", "max_width")),
    "gru": (("input_size", "max_width"), ("hidden_size", "max_width"),
            ("num_steps", "max_depth"), ("num_classes", "max_width")),
    "transformer": (("vocab_size", "max_vocab"), ("d_model", "max_width"),
                    ("d_mlp", "max_width"), ("n_layers", "max_depth"),
                    ("n_heads", "max_width"), ("max_len", "max_len")),
    "hf": (("vocab_size", "max_vocab"), ("hidden_size", "max_width"),
           ("intermediate_size", "max_width"), ("num_hidden_layers", "max_depth")),
}


def estimate_net_size(config: Mapping[str, Any]) -> NetSize:
    """The size of a validated built-in config (``arch`` mlp, gru or transformer) or of a
    Hugging Face ``config.json`` (any other mapping, read for ``hidden_size``,
    ``num_hidden_layers``, ``intermediate_size``, ``vocab_size``, ``torch_dtype``).

    Example: ``{"arch": "mlp", "input_dim": 16, "hidden_dims": [16, 16, 16],
    "num_classes": 2}`` has 3·(16+1)·16 + (16+1)·2 = 850 parameters, 3,400 bytes.
    """
    sizer = _SIZERS.get(str(config.get("arch")), _hf_size)
    return sizer(config)


def check_net_size(config: Mapping[str, Any], limits: NetLimits = DEFAULT_NET_LIMITS,
                   where: str = "config.json") -> NetSize:
    """Refuse a net config over ``limits`` from arithmetic alone (nothing is allocated).

    Args:
        config: a config whose fields have their types checked (``validate_net_config``),
            or a Hugging Face ``config.json``.
        limits: the deployment's net limits.
        where: the file the fields are named in.

    Returns:
        The net's size.

    Raises:
        ModelLoadError: ``where`` is ``<where>:<field>`` (``config.json:hidden_dims.0``);
            the message gives the value, the limit and the parameter estimate.
    """
    arch = str(config.get("arch")) if config.get("arch") in _SIZERS else "hf"
    for field, limit_name in _BOUNDS[arch]:
        limit = int(getattr(limits, limit_name))
        raw = config.get(field)
        values = raw if isinstance(raw, list) else [raw]
        if len(values) > limits.max_depth:
            raise ModelLoadError(
                f"{len(values):,} entries are over the limit of {limits.max_depth:,} "
                f"(max_depth); the net would hold about "
                f"{estimate_net_size(config).parameters:,} parameters", where=f"{where}:{field}")
        for i, value in enumerate(values):
            if isinstance(value, int) and value > limit:
                path = f"{field}.{i}" if isinstance(raw, list) else field
                raise ModelLoadError(
                    f"{value:,} is over the limit of {limit:,} ({limit_name}); "
                    f"the net would hold about {estimate_net_size(config).parameters:,} "
                    "parameters", where=f"{where}:{path}")
    size = estimate_net_size(config)
    if size.parameters > limits.max_parameters:
        raise ModelLoadError(
            f"the net would hold about {size.parameters:,} parameters "
            f"({size.bytes / 2**30:,.1f} GiB), over the limit of {limits.max_parameters:,} "
            "(max_parameters); this field's term is the largest",
            where=f"{where}:{size.largest_field}")
    return size
