"""A net directory on disk: ``config.json`` + ``model.safetensors``; load, save and digest it.

Weights are read only through safetensors (never ``torch.load`` or pickle), and every
problem with a directory is one ``ModelLoadError`` whose ``where`` names the directory,
the file, the ``config.json`` field or the tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from core.errors import ModelLoadError
from core.net_text import HF_CONFIG_FILE
from core.nets.base import InterventableNet
from core.nets.hf import load_hf_net
from core.nets.registry import build_net
from core.nets.size import check_net_size
from core.nets.tokenizer import load_word_tokenizer
from core.nets.transformer import TransformerNet

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# torch dtype -> the dtype tag safetensors records in its header.
_SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
}


def resolve_net_dir(directory: Path | str, root: Path | str | None = None) -> Path:
    """The directory to read, refused when ``root`` is given and it lies outside ``root``.

    Args:
        directory: the net directory, relative to ``root`` (or absolute).
        root: when given, the resolved directory (symlinks and ``..`` followed) must be
            ``root`` or lie under it.

    Returns:
        The directory (resolved when ``root`` is given).

    Raises:
        ModelLoadError: ``where`` is ``directory``: it escapes ``root``.
    """
    if root is None:
        return Path(directory)
    root_path = Path(root).resolve()
    resolved = (root_path / directory).resolve()
    if not resolved.is_relative_to(root_path):
        raise ModelLoadError("lies outside the allowed model root", where=str(directory))
    return resolved


def _net_file(directory: Path, name: str, root: Path | None) -> Path:
    """``directory / name``, checked to exist and (with a root) not to be a link out of it."""
    path = directory / name
    if not path.is_file():
        raise ModelLoadError("missing from the net directory", where=name)
    if root is not None and not path.resolve().is_relative_to(root.resolve()):
        raise ModelLoadError("links outside the allowed model root", where=name)
    return path


def _read_config(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"is not valid JSON: {error}", where=CONFIG_FILE) from error


def _read_tensors(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read exactly the tensors of ``expected`` (name -> tensor of the right shape and dtype).

    Names, shapes and dtypes are checked from the header before any tensor is read.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as weights:
            names = set(weights.keys())
            missing = sorted(set(expected) - names)
            if missing:
                raise ModelLoadError(
                    f"missing from {WEIGHTS_FILE} ({len(missing)} missing)", where=missing[0]
                )
            unexpected = sorted(names - set(expected))
            if unexpected:
                raise ModelLoadError(
                    f"unexpected in {WEIGHTS_FILE} for this config.json", where=unexpected[0]
                )
            for name, reference in expected.items():
                found_shape = tuple(weights.get_slice(name).get_shape())
                if found_shape != tuple(reference.shape):
                    raise ModelLoadError(
                        f"wrong shape: expected {tuple(reference.shape)}, found {found_shape}",
                        where=name,
                    )
                found_dtype = weights.get_slice(name).get_dtype()
                expected_dtype = _SAFETENSORS_DTYPES[reference.dtype]
                if found_dtype != expected_dtype:
                    raise ModelLoadError(
                        f"wrong dtype: expected {expected_dtype}, found {found_dtype}", where=name
                    )
            tensors = {name: weights.get_tensor(name) for name in expected}
    except SafetensorError as error:
        raise ModelLoadError(
            f"is not a valid safetensors file: {error}", where=WEIGHTS_FILE
        ) from error
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError("contains NaN or infinite values", where=name)
    return tensors


def load_net(
    directory: Path | str, root: Path | str | None = None, device: str | torch.device = "cpu"
) -> InterventableNet:
    """Load a net directory holding ``config.json`` and ``model.safetensors``.

    A directory with ``plot.json`` (``{"arch": "hf", ...}``) is a local Hugging Face
    causal LM instead and loads through ``core.nets.hf.load_hf_net``; a transformer's
    ``tokenizer.json`` is loaded with it.

    Args:
        directory: the net directory (relative to ``root`` when ``root`` is given).
        root: when given, refuse a directory or file that resolves outside it.
        device: where the loaded net lives.

    Returns:
        The net, in eval mode, with ``requires_grad`` False on every parameter.

    Raises:
        ModelLoadError: ``where`` names the directory (missing, outside ``root``), the file
            (missing, invalid JSON or safetensors), the ``config.json:<field>``, or the
            tensor (missing, unexpected, wrong shape, wrong dtype, not finite).
    """
    root_path = None if root is None else Path(root)
    net_dir = resolve_net_dir(directory, root_path)
    if not net_dir.is_dir():
        raise ModelLoadError("is not a local directory (nets are never downloaded)",
                             where=str(directory))
    if (net_dir / HF_CONFIG_FILE).is_file():
        hf_config = net_dir / CONFIG_FILE
        if hf_config.is_file():  # refuse a net too large before transformers allocates it
            config = _read_config(_net_file(net_dir, CONFIG_FILE, root_path))
            if isinstance(config, dict):
                check_net_size(config)
        return load_hf_net(net_dir, device)
    config = _read_config(_net_file(net_dir, CONFIG_FILE, root_path))
    net = build_net(config)
    tensors = _read_tensors(_net_file(net_dir, WEIGHTS_FILE, root_path), net.state_dict())
    net.load_state_dict(tensors, strict=True)
    if isinstance(net, TransformerNet):
        net.tokenizer = load_word_tokenizer(net_dir)
    net.to(device)
    net.eval()
    net.requires_grad_(False)
    return net


def save_net(net: InterventableNet, directory: Path | str) -> Path:
    """Write ``net`` as ``config.json`` (sorted keys, indented) + ``model.safetensors``.

    Each file is written to a temporary name and renamed, so a reader (or ``net_digest``)
    never sees half a file.

    Args:
        net: the net to save; its ``config`` is written as it is.
        directory: created if missing.

    Returns:
        The directory.
    """
    net_dir = Path(directory)
    net_dir.mkdir(parents=True, exist_ok=True)
    config_tmp = net_dir / f".{CONFIG_FILE}.tmp"
    config_tmp.write_text(json.dumps(net.config, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    os.replace(config_tmp, net_dir / CONFIG_FILE)
    tensors = {name: t.detach().cpu().contiguous() for name, t in net.state_dict().items()}
    weights_tmp = net_dir / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(weights_tmp), metadata={"format": "pt"})
    os.replace(weights_tmp, net_dir / WEIGHTS_FILE)
    if isinstance(net, TransformerNet) and net.tokenizer is not None:
        net.tokenizer.save(net_dir)
    return net_dir


def net_digest(directory: Path | str, root: Path | str | None = None) -> str:
    """sha256 (hex) over the bytes of ``config.json`` and ``model.safetensors``.

    Each file enters as its name, its length and its bytes, so moving bytes from one file
    to the other changes the digest. Nets are cached by this content key.

    Args:
        directory: the net directory (relative to ``root`` when ``root`` is given).
        root: when given, refuse a directory or file that resolves outside it.

    Raises:
        ModelLoadError: ``where`` names a missing file, or a directory outside ``root``.
    """
    root_path = None if root is None else Path(root)
    net_dir = resolve_net_dir(directory, root_path)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = _net_file(net_dir, name, root_path)
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
