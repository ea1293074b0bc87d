"""Where a decoder-only Hugging Face causal LM keeps its blocks and their parts, found from
the net's own structure (no per-family table of paths).

The blocks are the longest ``ModuleList`` of one block class under the decoder whose members
each have an attention module (``self_attn``, ``attn``, ``attention``, ``self_attention``)
and an MLP module (``mlp``, ``feed_forward``); the attention's output projection is its
``o_proj``, ``c_proj``, ``dense`` or ``out_proj``. Every supported block adds two branch
contributions to the residual stream, in sequence (GPT-2, Llama, ...) or in parallel
(GPT-NeoX with ``use_parallel_residual``, Phi):

    resid_out = resid_in + attn + mlp

where ``attn`` is the attention output projection's output, passed through the block's norm
of it when the family has one (Gemma-2/3 and OLMo-2: ``post_attention_layernorm``, told
apart from Llama's pre-MLP norm of the same name by a ``post_feedforward_layernorm`` next
to it), and ``mlp`` likewise (the MLP's output, or ``post_feedforward_layernorm``'s).
``check_layout`` verifies that equation on one token at load, so a family whose blocks do
something else is refused instead of given wrong sites.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from core.hooks import Hook, hooked

ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "feed_forward")
PROJECTION_NAMES = ("o_proj", "c_proj", "dense", "out_proj")
# (attention post-norm, MLP post-norm): present together only in post-norm families
POST_NORMS = ("post_attention_layernorm", "post_feedforward_layernorm")


class LayoutError(Exception):
    """A net whose blocks do not follow the conventions above; the message is one line."""


@dataclass(frozen=True)
class BlockLayout:
    """Dotted module paths: ``blocks`` from the LM, the rest inside one block.

    ``attn_out`` / ``mlp_out`` are the modules whose output is the branch's contribution to
    the residual stream (the branch itself, or its post-norm); ``o_proj``'s input is the
    heads' outputs, (B, T, H * d_head).
    """

    blocks: str
    attn: str
    mlp: str
    o_proj: str
    attn_out: str
    mlp_out: str


def find_layout(lm: nn.Module) -> BlockLayout:
    """The block layout of ``lm`` (a ``PreTrainedModel`` for causal LM).

    Raises:
        LayoutError: an encoder-decoder, no list of decoder blocks, or blocks without an
            attention module, an MLP module or an attention output projection.
    """
    config: Any = getattr(lm, "config")  # noqa: B009 (a Module attribute mypy cannot see)
    if getattr(config, "is_encoder_decoder", False):
        raise LayoutError("an encoder-decoder net; only decoder-only causal LMs are supported")
    get_decoder = getattr(lm, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else cast(Any, lm).base_model
    names = {id(module): name for name, module in lm.named_modules()}
    lists = [module for module in decoder.modules() if isinstance(module, nn.ModuleList)
             and len(module) > 0 and len({type(block) for block in module}) == 1]
    if not lists:
        raise LayoutError("no ModuleList of decoder blocks")
    blocks = max(lists, key=len)  # the first longest: the decoder's layers
    block = blocks[0]
    kind = type(block).__name__
    attn = _child(block, ATTENTION_NAMES, f"block {kind} has no attention module")
    mlp = _child(block, MLP_NAMES, f"block {kind} has no MLP module")
    o_proj = _child(block.get_submodule(attn), PROJECTION_NAMES,
                    f"attention {type(block.get_submodule(attn)).__name__} has no output "
                    "projection")
    post_norm = all(hasattr(block, name) for name in POST_NORMS)
    attn_out, mlp_out = POST_NORMS if post_norm else (attn, mlp)
    return BlockLayout(names[id(blocks)], attn, mlp, f"{attn}.{o_proj}", attn_out, mlp_out)


def _child(module: nn.Module, candidates: tuple[str, ...], missing: str) -> str:
    for name in candidates:
        if isinstance(getattr(module, name, None), nn.Module):
            return name
    raise LayoutError(f"{missing} (looked for {', '.join(candidates)})")


def check_layout(lm: nn.Module, layout: BlockLayout, project: Callable[[Tensor], Tensor],
                 ids: Tensor, heads_width: int) -> bool:
    """Run ``lm`` on ``ids`` (1, T) and check block 0 against the layout; return whether
    the blocks return a plain tensor (a tuple cannot be replayed from a recorded output).

    Args:
        project: block 0's heads (n, H * d_head) -> its attention contribution (n, D).
        heads_width: H * d_head, what the output projection should take.

    Raises:
        LayoutError: the forward fails, block 0's output is not its input plus the
            attention and MLP contributions, the attention contribution is not
            ``project`` of the heads, or the heads are not ``heads_width`` wide.
    """
    block = lm.get_submodule(layout.blocks)[0]  # type: ignore[index]
    seen: dict[str, Tensor] = {}
    returns_tensor: list[bool] = []

    def keep(name: str) -> Callable[[Tensor], None]:
        def read(t: Tensor) -> None:
            # a copy: Falcon adds attention into the MLP's output in place
            seen[name] = t.detach().flatten(0, -2).float().clone()  # (T, width)
        return read

    def note(module: nn.Module, args: Any, output: Any) -> None:
        returns_tensor.append(isinstance(output, Tensor))

    hooks = [Hook(block, keep("in"), "input"), Hook(block, keep("out")),
             Hook(block.get_submodule(layout.attn_out), keep("attn")),
             Hook(block.get_submodule(layout.mlp_out), keep("mlp")),
             Hook(block.get_submodule(layout.o_proj), keep("z"), "input")]
    handle = block.register_forward_hook(note)
    try:
        with hooked(hooks), torch.no_grad():
            cast(Any, lm).base_model(input_ids=ids, use_cache=False)
    except (RuntimeError, ValueError, IndexError) as error:  # a net that cannot run itself
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise LayoutError(f"a two-token forward failed: {first}") from None
    finally:
        handle.remove()
    missing = {"in", "out", "attn", "mlp", "z"} - set(seen)
    if missing:
        raise LayoutError(f"a forward never reached block 0's {sorted(missing)}")
    if seen["z"].shape[-1] != heads_width:
        raise LayoutError(f"the attention output projection takes {seen['z'].shape[-1]} "
                          f"features, not heads x head_dim = {heads_width}")
    dtype = next(lm.parameters()).dtype
    with torch.no_grad():
        projected = project(seen["z"].to(dtype)).float()
    if not is_close(seen["out"], seen["in"] + seen["attn"] + seen["mlp"], dtype):
        raise LayoutError("block output is not input + attention + MLP contributions")
    if not is_close(seen["attn"], projected, dtype):
        raise LayoutError("the attention contribution is not its output projection of the "
                          "heads")
    return returns_tensor[0]


def is_close(actual: Tensor, expected: Tensor, dtype: torch.dtype) -> bool:
    """Whether two fp32 tensors agree up to a few roundings in ``dtype``, relative to their
    norm: a wrong layout is off by O(1), rounding by O(eps)."""
    tol = max(1e-4, 4 * torch.finfo(dtype).eps)
    scale = max(float(actual.norm()), float(expected.norm()), 1e-12)
    return float((actual - expected).norm()) <= tol * scale
