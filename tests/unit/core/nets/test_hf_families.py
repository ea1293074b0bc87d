"""arch hf over every supported family: tiny random causal LMs built here from each config
class (2 blocks, width 32, nothing downloaded), one per family per module."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from core.causal.dataset import write_dataset
from core.causal.mcqa import VOCAB, MultipleChoiceColours
from core.errors import ModelLoadError
from core.job import JobContext, run_job
from core.nets import load_net
from core.nets.hf import HFNet
from core.spec import parse_job_spec
from tests.unit.core.nets.replay import recomputed

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["<pad>", "A", "B", "C", *(f"w{i}" for i in range(20))]
LABELS = ["A", "B", "C"]
MAX_LEN = 10
COMMON: dict[str, Any] = {
    "vocab_size": len(WORDS), "hidden_size": 32, "intermediate_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 64, "pad_token_id": 0, "bos_token_id": None,
    "eos_token_id": None,
}
# model_type -> what its tiny config sets beyond COMMON
FAMILIES: dict[str, dict[str, Any]] = {
    "gpt2": {},
    "gpt_neox": {"use_parallel_residual": True},
    "llama": {},
    "mistral": {"sliding_window": 4},
    "qwen2": {},
    "qwen3": {"head_dim": 8},
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "sliding_window": 4, "attn_logit_softcapping": 5.0,
               "final_logit_softcapping": 3.0, "query_pre_attn_scalar": 8},
    "gemma3_text": {"head_dim": 8, "sliding_window": 4, "final_logit_softcapping": 3.0,
                    "query_pre_attn_scalar": 8},
    "phi3": {},
    "olmo2": {},
    "phi": {},
    "stablelm": {"use_parallel_residual": True},
    "falcon": {},  # parallel attention; blocks return a tuple: no prefix replay
    "gptj": {"rotary_dim": 4},
    "cohere": {"logit_scale": 0.5},  # parallel, scaled logits
    "granite": {"logits_scaling": 4.0},  # divided logits (its residual_multiplier is 1)
    "olmo": {},
    "mixtral": {"num_local_experts": 2},  # the MLP is a mixture of experts
    "starcoder2": {},
}
PARALLEL = {"gpt_neox", "phi", "stablelm", "falcon", "gptj", "cohere"}
POST_NORM = {"gemma2", "gemma3_text", "olmo2"}


def word_tokenizer(words: list[str] = WORDS) -> Any:
    """A word-level tokenizer over ``words``; ``words[0]`` is the pad token."""
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {word: i for i, word in enumerate(words)}, unk_token=words[0]))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=word_level,
                                                pad_token=words[0], unk_token=words[0])


def tiny_lm(model_type: str, dtype: torch.dtype = torch.float32, **extra: Any) -> Any:
    config = transformers.AutoConfig.for_model(
        model_type, **{**COMMON, **FAMILIES.get(model_type, {}), **extra})
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).to(dtype)


def wrap(lm: Any) -> HFNet:
    return HFNet(lm, word_tokenizer(), {"arch": "hf", "labels": LABELS, "max_len": MAX_LEN})


@pytest.fixture(scope="module")
def nets() -> Callable[[str], HFNet]:
    built: dict[str, HFNet] = {}

    def get(model_type: str) -> HFNet:
        if model_type not in built:
            built[model_type] = wrap(tiny_lm(model_type))
        return built[model_type]
    return get


def token_ids(n: int, seed: int) -> torch.Tensor:
    """(n, MAX_LEN) ids of real words, the first row padded after 6 tokens."""
    ids = torch.randint(1, len(WORDS), (n, MAX_LEN), generator=torch.Generator().manual_seed(seed))
    ids[0, 6:] = 0
    return ids


@pytest.mark.parametrize("family", FAMILIES)
def test_the_label_logits_are_the_lm_logits_at_the_last_real_token(
        family: str, nets: Callable[[str], HFNet]) -> None:
    net = nets(family)
    ids = token_ids(3, seed=0)
    trace = net.trace(ids)
    for row, length in enumerate((6, MAX_LEN, MAX_LEN)):
        own = net.lm(ids[row:row + 1, :length]).logits[0, -1, [1, 2, 3]]
        assert_close(trace.logits[row, 0], own)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_blocks_and_their_branch_outputs_are_found(family: str,
                                                       nets: Callable[[str], HFNet]) -> None:
    layout = nets(family).layout
    assert len(nets(family).blocks) == 2
    # the MLP's hidden width sizes a forward's working set (GPT-2 ignores intermediate_size:
    # its MLP is 4 × d_model wide; a fused gate / up projection counts twice)
    assert nets(family).mlp_width in ({128} if family == "gpt2" else {64, 128})
    if family in POST_NORM:  # the stream gets the branch's norm, not the branch
        assert (layout.attn_out, layout.mlp_out) == ("post_attention_layernorm",
                                                     "post_feedforward_layernorm")
    else:
        assert (layout.attn_out, layout.mlp_out) == (layout.attn, layout.mlp)


@pytest.mark.parametrize("family", FAMILIES)
def test_an_identity_edit_at_every_site_kind_leaves_the_logits(
        family: str, nets: Callable[[str], HFNet]) -> None:
    net = nets(family)
    trace = net.trace(token_ids(3, seed=1))
    for location in ("resid:0/pos:3", "attn:0/pos:last", "mlp:0/pos:2", "head:0.1/pos:last",
                     "attn:1/pos:4", "mlp:1/pos:last", "head:1.3/pos:1", "resid:1/pos:last"):
        assert_close(net.resume(trace, {location: lambda h: h}, copies=2),
                     trace.logits.repeat(2, 1, 1), msg=location)


@pytest.mark.parametrize("family", FAMILIES)
def test_copying_the_source_residual_after_the_last_block_gives_the_source_logits(
        family: str, nets: Callable[[str], HFNet]) -> None:
    net = nets(family)
    base, source = net.trace(token_ids(4, seed=2)), net.trace(token_ids(4, seed=3))
    location = "resid:1/pos:last"
    patched = net.resume(base, {location: lambda h: source.activations[location]})
    assert_close(patched, source.logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_branch_site_is_what_the_branch_adds_to_the_stream(
        family: str, nets: Callable[[str], HFNet]) -> None:
    """Zeroing the last block's MLP (both branches in a parallel block) is subtracting its
    traced activation from the block's output."""
    net = nets(family)
    trace = net.trace(token_ids(3, seed=4))
    for branch in ("mlp", "attn") if family in PARALLEL else ("mlp",):
        added = trace.activations[f"{branch}:1/pos:last"]  # (B, D)
        removed = net.resume(trace, {f"{branch}:1/pos:last": torch.zeros_like})
        subtracted = net.resume(trace, {"resid:1/pos:last": lambda h, a=added: h - a})
        assert_close(removed, subtracted, atol=1e-4, rtol=1e-4, msg=branch)
        assert not torch.allclose(removed, trace.logits), branch


@pytest.mark.parametrize("family", FAMILIES)
def test_replaying_the_prefix_equals_recomputing_it(family: str,
                                                    nets: Callable[[str], HFNet]) -> None:
    net = nets(family)
    assert net._blocks_return_tensors == (family != "falcon")
    trace = net.trace(token_ids(4, seed=5))
    zeros: Any = torch.zeros_like
    for edits, copies in [({"attn:1/pos:last": zeros}, 1),
                          ({"mlp:1/pos:3": lambda h: h * 0.5, "head:1.2/pos:last": zeros}, 2),
                          ({"resid:0/pos:last": lambda h: h.flip(-1)}, 1)]:
        replay = net.resume(trace, edits, copies)
        assert_close(replay, recomputed(net, trace, edits, copies))
        assert not torch.allclose(replay, trace.logits.repeat(copies, 1, 1)), edits


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def gemma2_half(request: pytest.FixtureRequest) -> HFNet:
    return wrap(tiny_lm("gemma2", request.param))


def test_a_half_precision_net_hands_out_fp32_and_identity_edits_keep_its_logits(
        gemma2_half: HFNet) -> None:
    net = gemma2_half
    trace = net.trace(token_ids(3, seed=6))
    assert trace.logits.dtype == torch.float32
    assert trace.activations["mlp:0/pos:last"].dtype == torch.float32
    streams = trace.activations.streams  # type: ignore[attr-defined]
    assert streams["resid"].dtype == next(net.lm.parameters()).dtype
    for location in ("resid:0/pos:3", "attn:0/pos:last", "mlp:0/pos:2", "head:1.1/pos:last"):
        assert_close(net.resume(trace, {location: lambda h: h}), trace.logits,
                     atol=2e-2, rtol=2e-2, msg=location)


def test_a_half_precision_net_resumes_like_it_recomputes(gemma2_half: HFNet) -> None:
    net = gemma2_half
    base, source = net.trace(token_ids(4, seed=7)), net.trace(token_ids(4, seed=8))
    location = "resid:1/pos:last"
    assert_close(net.resume(base, {location: lambda h: source.activations[location]}),
                 source.logits)
    edits = {"attn:1/pos:last": lambda h: source.activations["attn:1/pos:last"]}
    assert_close(net.resume(base, edits), recomputed(net, base, edits))


def save(directory: Path, lm: Any, **plot: Any) -> Path:
    word_tokenizer().save_pretrained(directory)
    lm.save_pretrained(directory)
    (directory / "plot.json").write_text(json.dumps({"arch": "hf", "labels": LABELS,
                                                     "max_len": MAX_LEN, **plot}))
    return directory


def test_a_net_loads_in_its_saved_dtype_or_the_configured_one(tmp_path: Path) -> None:
    directory = save(tmp_path, tiny_lm("llama", torch.bfloat16))
    net = load_net(directory)
    assert isinstance(net, HFNet)
    assert next(net.lm.parameters()).dtype == torch.bfloat16
    assert net.config["dtype"] == "bf16"
    (directory / "plot.json").write_text(json.dumps({"arch": "hf", "labels": LABELS,
                                                     "max_len": MAX_LEN, "dtype": "fp32"}))
    net = load_net(directory)
    assert isinstance(net, HFNet)
    assert next(net.lm.parameters()).dtype == torch.float32


def test_an_unknown_dtype_is_refused(tmp_path: Path) -> None:
    directory = save(tmp_path, tiny_lm("llama"), dtype="int8")
    with pytest.raises(ModelLoadError, match="must be one of") as error:
        load_net(directory)
    assert error.value.where == "plot.json:dtype"


@pytest.mark.parametrize("model_type", ["t5", "bart"])
def test_an_encoder_decoder_family_is_refused_in_one_line(tmp_path: Path,
                                                          model_type: str) -> None:
    config = transformers.AutoConfig.for_model(
        model_type, vocab_size=len(WORDS), d_model=32, d_ff=64, d_kv=8, num_layers=1,
        num_heads=4, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64)
    lm = transformers.AutoModelForSeq2SeqLM.from_config(config)
    with pytest.raises(ModelLoadError) as error:
        load_net(save(tmp_path, lm))
    assert f"model_type {model_type!r} is an encoder-decoder net" in error.value.message
    assert "\n" not in error.value.message


def test_blocks_that_scale_their_branches_are_refused_in_one_line() -> None:
    """Granite multiplies each branch before adding it: attn + mlp is not Δresid."""
    with pytest.raises(ModelLoadError, match="model_type 'granite' is not supported: "
                       "block output is not input") as error:
        wrap(tiny_lm("granite", residual_multiplier=0.5))
    assert error.value.where == "config.json:model_type"
    assert "\n" not in error.value.message


@pytest.mark.slow
def test_a_text_job_runs_on_a_bf16_gemma2(tmp_path: Path) -> None:
    task = MultipleChoiceColours(num_objects=1)
    bank = task.sample_bank(60, torch.Generator().manual_seed(4), 0.5)
    directory = tmp_path / "gemma2"
    word_tokenizer(VOCAB).save_pretrained(directory)
    tiny_lm("gemma2", torch.bfloat16, vocab_size=len(VOCAB)).save_pretrained(directory)
    (directory / "plot.json").write_text(json.dumps({"arch": "hf", "labels": LABELS,
                                                     "max_len": 24}))
    write_dataset(tmp_path / "pairs.jsonl", bank, words=VOCAB)
    spec: dict[str, Any] = {
        "model": {"path": str(directory)}, "task": {"dataset": "pairs.jsonl"},
        "pairs": {"fit": 20, "calibration": 20, "test": 20},
        "levels": [{"granularity": "position", "layer": 1, "keep": 2},
                   {"granularity": "pca", "band_size": 8, "scope": "per_variable"}],
        "calibration": {"top_k": [1, 2], "strengths": [1.0, 2.0]},
        "coupling": {"epsilons": [0.1]},
    }
    result = run_job(parse_job_spec(spec), JobContext(tmp_path, tmp_path, tmp_path / "cache",
                                                      "cpu"))
    assert [level.granularity for level in result.levels] == ["position", "pca"]
    assert result.net["config"]["dtype"] == "bf16"
    assert set(result.handles) == {"answer_pointer", "answer_token"}


def value_rows(net: HFNet) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Block 0's value weights and bias, viewed with output features on dim 0, and the
    number of key/value heads; for head 0 the value rows are ``[:d_head]`` of the view."""
    attn, width, d = net.part(0, "attn"), net.n_heads * net.d_head, net.d_head
    if hasattr(attn, "v_proj"):
        return attn.v_proj.weight, attn.v_proj.bias, attn.v_proj.weight.shape[0] // d
    if hasattr(attn, "c_attn"):  # GPT-2: Conv1D (in, 3 D), q | k | v
        return attn.c_attn.weight.T[2 * width:], attn.c_attn.bias[2 * width:], net.n_heads
    if hasattr(attn, "qkv_proj"):  # Phi-3: q (H d) | k (KV d) | v (KV d)
        kv = (attn.qkv_proj.weight.shape[0] - width) // (2 * d)
        return attn.qkv_proj.weight[width + kv * d:], None, kv
    # GPT-NeoX: per head q | k | v, head 0's value rows are 2d..3d
    weight, bias = attn.query_key_value.weight, attn.query_key_value.bias
    return weight[2 * d:], bias[2 * d:], net.n_heads


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "falcon"])
def test_a_head_site_is_the_output_of_that_head(family: str) -> None:
    """With the value rows of key/value head 0 zeroed, exactly the heads that share it
    output zeros: ``head:i.h`` is head h's slice, in the net's own head order."""
    net = wrap(tiny_lm(family))
    weight, bias, groups = value_rows(net)
    with torch.no_grad():  # a net of this test's own: its weights are ours to change
        weight[:net.d_head] = 0
        if bias is not None:
            bias[:net.d_head] = 0
    trace = net.trace(token_ids(2, seed=9))
    zeroed = [bool((trace.activations[f"head:0.{h}/pos:last"] == 0).all())
              for h in range(net.n_heads)]
    assert zeroed == [h < net.n_heads // groups for h in range(net.n_heads)]
