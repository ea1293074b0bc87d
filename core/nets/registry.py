"""The built-in architectures by name, and ``build_net``: a validated ``config.json`` -> net.

Each architecture declares its ``config.json`` fields as data (name -> kind), so a bad
config is refused with a ``ModelLoadError`` naming ``config.json:<field>`` before any
module is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.errors import ModelLoadError
from core.nets.base import InterventableNet
from core.nets.gru import GRUNet
from core.nets.mlp import ACTIVATIONS, MLP
from core.nets.size import check_net_size
from core.nets.tokens import parse_named_positions
from core.nets.transformer import TransformerNet

ARCHS: dict[str, type[InterventableNet]] = {
    "mlp": MLP, "gru": GRUNet, "transformer": TransformerNet,
}


def _is_positive_int(value: object) -> bool:
    # bool is an int subclass; ``true`` is not a width.
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_positive_int_list(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(map(_is_positive_int, value))


def _is_nonneg_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_nonneg_int_list(value: object) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(map(_is_nonneg_int, value))


def _is_optional_nonneg_int(value: object) -> bool:
    return value is None or _is_nonneg_int(value)


def _is_object(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_activation(value: object) -> bool:
    return isinstance(value, str) and value in ACTIVATIONS


# kind -> (check, what the field must be, for the error message)
_KINDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "positive_int": (_is_positive_int, "a positive integer"),
    "positive_int_list": (_is_positive_int_list, "a non-empty list of positive integers"),
    "activation": (_is_activation, f"one of {sorted(ACTIVATIONS)}"),
    "nonneg_int_list": (_is_nonneg_int_list, "a non-empty list of integers >= 0"),
    "optional_nonneg_int": (_is_optional_nonneg_int, "null or an integer >= 0"),
    "object": (_is_object, "a JSON object"),
}

# arch -> field -> kind. ``arch`` itself is checked first and is not listed.
_FIELDS: dict[str, dict[str, str]] = {
    "mlp": {
        "input_dim": "positive_int",
        "hidden_dims": "positive_int_list",
        "num_classes": "positive_int",
        "activation": "activation",
    },
    "gru": {
        "input_size": "positive_int",
        "hidden_size": "positive_int",
        "num_steps": "positive_int",
        "num_classes": "positive_int",
    },
    "transformer": {
        "vocab_size": "positive_int",
        "d_model": "positive_int",
        "n_layers": "positive_int",
        "n_heads": "positive_int",
        "d_mlp": "positive_int",
        "max_len": "positive_int",
        "label_token_ids": "nonneg_int_list",
        "pad_token_id": "optional_nonneg_int",
        "named_positions": "object",
    },
}

# Optional fields and the value a config without them means.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"activation": "relu"},
    "gru": {},
    "transformer": {"pad_token_id": None, "named_positions": {}},
}


def validate_net_config(config: object) -> dict[str, Any]:
    """Check a parsed ``config.json`` against its architecture's fields.

    Args:
        config: the parsed JSON value.

    Returns:
        A copy of ``config`` with optional fields filled in (MLP ``activation``: ``relu``).

    Raises:
        ModelLoadError: ``where`` is ``config.json`` (not an object) or
            ``config.json:<field>`` (unknown arch, missing, extra or ill-typed field, or a
            size over ``core.nets.size.DEFAULT_NET_LIMITS``).
    """
    if not isinstance(config, Mapping):
        raise ModelLoadError(
            f"must be a JSON object, found {type(config).__name__}", where="config.json"
        )
    arch = config.get("arch")
    if arch not in ARCHS:
        raise ModelLoadError(
            f"unknown arch {arch!r}; expected one of {sorted(ARCHS)}", where="config.json:arch"
        )
    fields = _FIELDS[arch]
    filled = {**_DEFAULTS[arch], **config}
    extra = sorted(set(filled) - set(fields) - {"arch"})
    if extra:
        raise ModelLoadError(
            f"unexpected field for arch {arch!r}; expected {sorted(fields)}",
            where=f"config.json:{extra[0]}",
        )
    for name, kind in fields.items():
        if name not in filled:
            raise ModelLoadError(f"missing (arch {arch!r})", where=f"config.json:{name}")
        check, description = _KINDS[kind]
        if not check(filled[name]):
            raise ModelLoadError(
                f"must be {description}, found {filled[name]!r}", where=f"config.json:{name}"
            )
    check_net_size(filled)  # before any module exists: a width past the limit allocates nothing
    if arch == "transformer":
        _check_transformer(filled)
    return dict(filled)


def _check_transformer(config: Mapping[str, Any]) -> None:
    """Cross-field checks of a transformer config (ids inside the vocabulary, head split)."""
    if config["d_model"] % config["n_heads"]:
        raise ModelLoadError(f"must divide d_model ({config['d_model']})",
                             where="config.json:n_heads")
    vocab = config["vocab_size"]
    for name in ("label_token_ids", "pad_token_id"):
        value = config[name]
        ids = value if isinstance(value, list) else [] if value is None else [value]
        if any(i >= vocab for i in ids):
            raise ModelLoadError(f"token ids must be < vocab_size ({vocab})",
                                 where=f"config.json:{name}")
    for name, spec in parse_named_positions(config["named_positions"]).items():
        if spec.token >= vocab:
            raise ModelLoadError(f"token ids must be < vocab_size ({vocab})",
                                 where=f"config.json:named_positions.{name}")


def build_net(config: object) -> InterventableNet:
    """Build a freshly initialised net from a ``config.json`` dict.

    Args:
        config: e.g. ``{"arch": "mlp", "input_dim": 16, "hidden_dims": [16, 16, 16],
            "num_classes": 2, "activation": "relu"}`` or ``{"arch": "gru", "input_size": 2,
            "hidden_size": 16, "num_steps": 4, "num_classes": 2}``.

    Returns:
        The net, in training mode, with PyTorch's default initialisation.

    Raises:
        ModelLoadError: the config does not validate (see ``validate_net_config``).
    """
    valid = validate_net_config(config)
    return ARCHS[valid["arch"]](valid)
