"""A local Hugging Face causal LM as an ``InterventableNet`` (``plot.json``: ``arch: hf``).

The directory holds what ``save_pretrained`` wrote for the model and its tokenizer, plus
``plot.json``: ``{"arch": "hf", "labels": [" A", " B"], "max_len": 32,
"named_positions": {...}, "dtype": "bf16"}`` (``dtype`` optional: ``bf16``, ``fp16`` or
``fp32``; without it the saved dtype). Both are loaded with ``local_files_only=True``:
nothing is ever downloaded. Any decoder-only family whose blocks ``core.nets.hf_layout``
finds works; a site means the same in every family:

- ``resid:i``: block i's output hidden state (the residual stream after block i);
- ``attn:i``: the attention branch's contribution added to the stream: the output
  projection's output, after the post-attention norm in Gemma-2/3 and OLMo-2;
- ``mlp:i``: the MLP branch's contribution likewise (after Gemma-2/3's and OLMo-2's
  post-feedforward norm); in parallel blocks (GPT-NeoX, Phi) both read the same input;
- ``head:i.h``: head h's (d_head) slice of the input to the attention output projection.

Sites are read or replaced only through ``core.hooks.hooked``. The net runs in its dtype;
the activations and logits it hands out are fp32, and an edit receives fp32 rows and is
written back in the net's dtype.

``transformers`` is imported when such a net is loaded, never by importing ``core``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional

from core.errors import ModelLoadError, PlotError
from core.hooks import Hook, hooked, replayed
from core.net_text import HF_CONFIG_FILE, hf_encoder, hf_pad_id
from core.nets.base import Edit, Trace, tile
from core.nets.hf_layout import LayoutError, check_layout, find_layout, is_close
from core.nets.tokenizer import label_token_ids
from core.nets.tokens import (
    LAST,
    TokenNet,
    edit_at,
    group_edits,
    parse_named_positions,
    position_labels,
    resolve_positions,
    stack_layers,
    streams_needed,
    token_activations,
    token_widths,
    traced_resid,
)

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16,
                                  "fp32": torch.float32}


def _submodule(root: nn.Module, path: str) -> nn.Module:
    return root.get_submodule(path)


class HFNet(TokenNet):
    """A causal LM whose output is the label tokens' logits at the last real token.

    ``resume`` reruns the forward on ``copies`` tiled copies of the batch with hooks at the
    edited locations. The blocks before the first edited one are replayed from the trace
    (their recorded outputs, not recomputed; also the first edited block when only its
    output is edited); embeddings and the rest run as usual. Every edit, the first
    included, receives (copies * B, D). ``replay_prefix = False`` recomputes every block.
    """

    replay_prefix = True

    def __init__(self, lm: nn.Module, tokenizer: Any, config: dict[str, Any]) -> None:
        """Raises:
            ModelLoadError: ``where`` is ``config.json:model_type`` when the family's blocks
                are not found or do not add attention and MLP to the stream (one line), or
                ``plot.json:labels.<i>`` for a label that is not one token.
        """
        super().__init__()
        self.lm = lm.eval()  # dropout off: the layout check and every trace are exact
        self.tokenizer = tokenizer
        hf: Any = getattr(lm, "config")  # noqa: B009 (a Module attribute mypy cannot see)
        # the config itself, or a multimodal net's text part
        text = hf.get_text_config() if hasattr(hf, "get_text_config") else hf
        d_model, n_heads = int(text.hidden_size), int(text.num_attention_heads)
        self.n_heads = n_heads
        self.d_head = int(getattr(text, "head_dim", None) or d_model // n_heads)
        # what the LM head does after its linear map: Cohere scales, Granite divides, and
        # Gemma-2/3 cap (c * tanh(logits / c)); checked against the LM's own logits below
        self.logit_scale = float(getattr(text, "logit_scale", None) or 1.0) \
            / float(getattr(text, "logits_scaling", None) or 1.0)
        self.softcap = float(getattr(text, "final_logit_softcapping", None) or 0.0)
        self.max_len = int(config["max_len"])
        self.named = parse_named_positions(config.get("named_positions", {}),
                                           f"{HF_CONFIG_FILE}:named_positions")
        self.labels = position_labels(self.max_len, self.named)
        self.pad_token_id = hf_pad_id(tokenizer)
        try:
            ids = label_token_ids(lambda t: list(tokenizer.encode(t, add_special_tokens=False)),
                                  config["labels"])
        except PlotError as error:
            raise ModelLoadError(error.message, f"{HF_CONFIG_FILE}:{error.where}") from None
        self.register_buffer("label_ids", torch.tensor(ids, device=_device(lm)),
                             persistent=False)
        try:
            self._blocks_return_tensors = self._check_structure(int(text.vocab_size))
        except LayoutError as error:
            raise ModelLoadError(f"model_type {hf.model_type!r} is not supported: {error}",
                                 "config.json:model_type") from None
        self.config = {**config, "model_type": str(hf.model_type), "label_token_ids": ids}
        # the widest matrix of the first block's MLP: its hidden width, however a family
        # names it (GPT-2's Conv1D stores it transposed; a mixture's experts count alike)
        self.mlp_width = max(max(p.shape) for p in self.part(0, "mlp").parameters()
                             if p.dim() >= 2)
        self._widths = token_widths(len(self.blocks), n_heads, d_model, self.labels,
                                    self.d_head)

    def _check_structure(self, vocab_size: int) -> bool:
        """Find the blocks, check them and the label logits on a two-token prompt; return
        whether blocks return a plain tensor (only then is a prefix replayable).

        Raises:
            LayoutError: with the one-line reason.
        """
        self.layout = find_layout(self.lm)
        self.blocks: list[nn.Module] = list(cast(nn.ModuleList,
                                                 _submodule(self.lm, self.layout.blocks)))
        # two tokens, neither the pad token (the label logits would mask it)
        probe = (self.pad_token_id + torch.arange(1, 3, device=_device(self.lm))
                 ).unsqueeze(0) % vocab_size  # (1, 2)
        returns_tensor = check_layout(self.lm, self.layout, lambda z: self.project(0, z),
                                      probe, self.n_heads * self.d_head)
        with torch.no_grad():
            full = cast(Any, self.lm)(input_ids=probe, use_cache=False).logits  # (1, 2, V)
            ours = self._logits(probe, torch.ones(1, dtype=torch.long, device=probe.device))
        own: Tensor = full[:, -1, self.label_ids].float()
        if not is_close(ours[:, 0], own, _dtype(self.lm)):
            raise LayoutError("the label logits are not the LM head's linear map of the "
                              "last hidden state (with any known scale or soft cap)")
        return returns_tensor

    @property
    def output_shape(self) -> tuple[int, int]:
        return (1, len(self.config["labels"]))

    def text_encoder(self) -> Callable[[str], list[int]] | None:
        """The tokenizer's leading special tokens (``<bos>``) and the text, padded to
        ``max_len`` (``core.net_text.hf_encoder``, as an upload is checked)."""
        return hf_encoder(self.tokenizer, self.max_len)

    def label_names(self) -> tuple[str, ...]:
        return tuple(str(label) for label in self.config["labels"])

    def part(self, block: int, name: str) -> nn.Module:
        """Block ``block``'s ``attn``, ``mlp``, ``o_proj``, ``attn_out`` or ``mlp_out``."""
        return _submodule(self.blocks[block], getattr(self.layout, name))

    def project(self, block: int, z: Tensor) -> Tensor:
        """Block ``block``'s heads (n, H * d_head) -> its attention contribution (n, D), in
        the net's dtype: the output projection, then the post-attention norm if any."""
        out: Tensor = self.part(block, "o_proj")(z)
        if self.layout.attn_out != self.layout.attn:
            out = self.part(block, "attn_out")(out)
        return out

    def _project_fp32(self, block: int, z: Tensor) -> Tensor:
        return self.project(block, z.to(_dtype(self.lm))).float()

    def _logits(self, ids: Tensor, last: Tensor) -> Tensor:
        """Run the base model, then the LM head only at the ``last`` (R,) position of each
        row: the label logits, (R, 1, C) fp32."""
        rows = torch.arange(ids.shape[0], device=ids.device)
        mask = (ids != self.pad_token_id).long()
        mask[rows, last] = 1
        hidden = cast(Any, self.lm).base_model(input_ids=ids, attention_mask=mask,
                                               use_cache=False).last_hidden_state
        lm: Any = self.lm
        head = lm.get_output_embeddings()
        label_ids: Tensor = self.label_ids  # type: ignore[assignment]
        bias = None if head.bias is None else head.bias[label_ids]
        logits = functional.linear(hidden[rows, last], head.weight[label_ids], bias)  # (R, C)
        logits = logits.float() * self.logit_scale
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits.unsqueeze(1)

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        kept = streams_needed(locations, len(self.blocks))
        positions = resolve_positions(inputs, self.pad_token_id, self.named)
        resid: dict[int, Tensor] = {}
        z: dict[int, Tensor] = {}

        def keep(store: dict[int, Tensor], i: int) -> Callable[[Tensor], None]:
            def read(t: Tensor) -> None:
                store[i] = t
            return read

        hooks = [Hook(self.blocks[0], keep(resid, 0), "input")] if 0 in kept.resid else []
        for i, block in enumerate(self.blocks):
            if i + 1 in kept.resid:
                hooks.append(Hook(block, keep(resid, i + 1)))
            if i in kept.z:
                hooks.append(Hook(self.part(i, "o_proj"), keep(z, i), "input"))
        with hooked(hooks):
            logits = self._logits(inputs, positions[:, self.labels.index(LAST)])
        rows, length = inputs.shape
        lm: Any = self.lm
        embedding: Tensor = lm.get_input_embeddings().weight  # the model's dtype and device
        resid_stack = stack_layers([resid[i] for i in kept.resid],
                                   (rows, length, int(embedding.shape[1])), embedding)
        heads = stack_layers([z[i].reshape(rows, length, self.n_heads, self.d_head)
                              for i in kept.z],
                             (rows, length, self.n_heads, self.d_head), embedding)
        activations = token_activations(resid_stack, heads, positions, self.labels,
                                        self._project_fp32, kept)
        return Trace(inputs=inputs, activations=activations, logits=logits)

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        self.first_edited(edits)
        streams = trace.activations.streams  # type: ignore[attr-defined]
        positions = tile(streams["positions"], copies)
        grouped = group_edits(edits, self.labels)
        hooks = []
        for block, group in sorted(grouped.items()):
            for loc, column, edit in group:
                at = positions[:, column]
                if loc.component == "head":
                    hooks.append(Hook(self.part(block, "o_proj"),
                                      self._head_edit(at, edit, loc.head), "input"))
                else:
                    module = self.blocks[block] if loc.component == "resid" \
                        else self.part(block, loc.component)
                    hooks.append(Hook(module, self._stream_edit(at, edit)))
        first = min(grouped)
        only_resid = all(loc.component == "resid" for loc, _, _ in grouped[first])
        skip = (first + 1 if only_resid else first) if self.replay_prefix \
            and self._blocks_return_tensors else 0
        # only the last replayed block's output reaches a computed block (or an edit): the
        # blocks before it replay that same (untiled) tensor, their output is never read
        last_output = traced_resid(trace.activations, skip) if skip else None
        recorded = [cast(Tensor, last_output) if i < skip - 1
                    else tile(cast(Tensor, last_output), copies) for i in range(skip)]
        with replayed(self.blocks[:skip], recorded), hooked(hooks):
            return self._logits(tile(trace.inputs, copies),
                                positions[:, self.labels.index(LAST)])

    @staticmethod
    def _stream_edit(at: Tensor, edit: Edit) -> Callable[[Tensor], Tensor]:
        return lambda t: edit_at(t, at, _in_fp32(edit))

    def _head_edit(self, at: Tensor, edit: Edit, head: int | None) -> Callable[[Tensor], Tensor]:
        def apply(t: Tensor) -> Tensor:
            z = t.reshape(*t.shape[:2], self.n_heads, self.d_head)  # (R, T, H, dh)
            return edit_at(z, at, _in_fp32(edit), head).reshape(t.shape)
        return apply


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def _dtype(net: nn.Module) -> torch.dtype:
    return next(net.parameters()).dtype


def _in_fp32(edit: Edit) -> Edit:
    """``edit`` on fp32 rows (the trace's activations are fp32); ``edit_at`` writes the
    result back in the stream's dtype."""
    return lambda h: edit(h.float())


def load_hf_net(directory: Path, device: str | torch.device = "cpu",
                dtype: str | None = None) -> HFNet:
    """Load the causal LM and tokenizer in ``directory`` (local files only) and wrap them.

    Args:
        dtype: ``bf16``, ``fp16`` or ``fp32``; None: ``plot.json``'s ``dtype``, else the
            dtype the weights were saved in.

    Raises:
        ModelLoadError: ``where`` names ``plot.json:<field>``, the directory (not a local
            Hugging Face causal LM), ``config.json:model_type`` (a family whose blocks are
            not supported) or a label.
    """
    config = _read_plot_config(directory)
    if dtype is not None and dtype not in DTYPES:
        raise ModelLoadError(f"must be one of {sorted(DTYPES)}", "dtype")
    name = dtype or config.get("dtype")
    try:
        import transformers
    except ImportError as error:  # an optional dependency of the worker image
        raise ModelLoadError("arch hf needs the transformers package",
                             f"{HF_CONFIG_FILE}:arch") from error
    try:
        hf = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
        if hf.is_encoder_decoder:  # transformers would load the decoder half alone
            raise ModelLoadError(f"model_type {hf.model_type!r} is an encoder-decoder net; "
                                 "only decoder-only causal LMs are supported",
                                 "config.json:model_type")
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
        # transformers < 4.56 calls the argument torch_dtype
        dtype_key = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            directory, config=hf, local_files_only=True,
            **{dtype_key: DTYPES[name] if name else "auto"})
    except (OSError, ValueError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ModelLoadError(f"is not a local Hugging Face causal LM"
                             f"{_model_type_note(directory)}: {first}", str(directory)) from None
    cast(nn.Module, lm).to(device)
    net = HFNet(lm, tokenizer, {**config, "dtype": _dtype_name(lm.dtype)})
    net.eval()
    net.requires_grad_(False)
    return net


def _read_plot_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / HF_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"cannot be read: {error}", HF_CONFIG_FILE) from None
    if not isinstance(config, dict) or config.get("arch") != "hf":
        raise ModelLoadError('must be an object with "arch": "hf"', f"{HF_CONFIG_FILE}:arch")
    labels = config.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ModelLoadError("must be a non-empty list of label strings",
                             f"{HF_CONFIG_FILE}:labels")
    max_len = config.get("max_len")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ModelLoadError("must be a positive integer", f"{HF_CONFIG_FILE}:max_len")
    if "dtype" in config and config["dtype"] not in DTYPES:
        raise ModelLoadError(f"must be one of {sorted(DTYPES)}", f"{HF_CONFIG_FILE}:dtype")
    extra = set(config) - {"arch", "labels", "max_len", "named_positions", "dtype"}
    if extra:
        raise ModelLoadError("unexpected field", f"{HF_CONFIG_FILE}:{sorted(extra)[0]}")
    return config


def _version(text: str) -> tuple[int, ...]:
    """``"4.56.1"`` -> (4, 56): the release's major and minor numbers."""
    return tuple(int("".join(c for c in part if c.isdigit()) or 0)
                 for part in text.split(".")[:2])


def _model_type_note(directory: Path) -> str:
    """`` (config.json model_type 't5')`` when config.json names one, else ``""``."""
    try:
        model_type = json.loads((directory / "config.json").read_text(encoding="utf-8")
                                ).get("model_type")
    except (OSError, ValueError, AttributeError):
        return ""
    return f" (config.json model_type {model_type!r})" if isinstance(model_type, str) else ""


def _dtype_name(dtype: torch.dtype) -> str:
    names = {value: key for key, value in DTYPES.items()}
    if dtype not in names:
        raise ModelLoadError(f"weights in {dtype}; a net runs in one of {sorted(DTYPES)}",
                             f"{HF_CONFIG_FILE}:dtype")
    return names[dtype]
