"""arch hf: a tiny GPT-2 built and saved here loads from its directory and runs a job."""

from __future__ import annotations

import json
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

MAX_LEN = 24


def save_tiny_lm(directory: Path, labels: list[str], family: str = "gpt2") -> Path:
    """A random 2-block causal LM (GPT-2, or Llama with grouped-query attention and rotary
    positions) over the MCQA words, its tokenizer and plot.json."""
    vocab = {word: i for i, word in enumerate(VOCAB)}
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=word_level,
                                                     pad_token="<pad>", unk_token="<pad>")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=2,
                                         n_head=2, n_positions=32)
        transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    else:
        config = transformers.LlamaConfig(
            vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            bos_token_id=None, eos_token_id=None, pad_token_id=0)
        transformers.LlamaForCausalLM(config).save_pretrained(directory)
    (directory / "plot.json").write_text(json.dumps({"arch": "hf", "labels": labels,
                                                     "max_len": MAX_LEN}))
    return directory


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_lm(tmp_path_factory.mktemp("gpt2"), ["A", "B", "C"])


@pytest.fixture(scope="module")
def gpt2(gpt2_dir: Path) -> HFNet:
    net = load_net(gpt2_dir)
    assert isinstance(net, HFNet)
    return net


def encode(net: HFNet, texts: list[str]) -> torch.Tensor:
    encoder = net.text_encoder()
    assert encoder is not None
    return torch.tensor([encoder(text) for text in texts])


def prompts(n: int, seed: int) -> list[str]:
    task = MultipleChoiceColours(num_objects=1)
    return task.prompts(task.sample_inputs(n, torch.Generator().manual_seed(seed)))


def test_trace_logits_are_the_lm_logits_of_the_labels_at_the_last_token(gpt2: HFNet) -> None:
    ids = encode(gpt2, prompts(3, seed=0))
    ids[0, 10:] = gpt2.pad_token_id  # a shorter prompt: its last token is position 9
    trace = gpt2.trace(ids)
    lengths = (ids != gpt2.pad_token_id).sum(dim=1)
    label_ids = [VOCAB.index(x) for x in "ABC"]
    for row in range(3):
        own = gpt2.lm(ids[row:row + 1, :lengths[row]]).logits[0, -1, label_ids]
        assert_close(trace.logits[row, 0], own)


def test_identity_resume_equals_trace_and_leaves_no_hook(gpt2: HFNet) -> None:
    trace = gpt2.trace(encode(gpt2, prompts(3, seed=1)))
    for location in ("resid:0/pos:last", "attn:1/pos:3", "mlp:0/pos:last",
                     "head:1.1/pos:12", "resid:1/pos:last"):
        assert_close(gpt2.resume(trace, {location: lambda h: h}, copies=2),
                     trace.logits.repeat(2, 1, 1))
    for module in gpt2.lm.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_copying_the_source_residual_at_the_last_block_gives_source_logits(gpt2: HFNet
                                                                           ) -> None:
    base = gpt2.trace(encode(gpt2, prompts(4, seed=2)))
    source = gpt2.trace(encode(gpt2, prompts(4, seed=3)))
    location = "resid:1/pos:last"
    patched = gpt2.resume(base, {location: lambda h: source.activations[location]})
    assert_close(patched, source.logits)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> HFNet:
    net = load_net(save_tiny_lm(tmp_path_factory.mktemp("llama"), ["A", "B", "C"], "llama"))
    assert isinstance(net, HFNet)
    return net


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_replaying_the_blocks_before_the_first_edit_changes_no_logit(
        family: str, gpt2: HFNet, llama: HFNet) -> None:
    net = gpt2 if family == "gpt2" else llama
    ids = encode(net, prompts(4, seed=4))
    ids[0, 10:] = net.pad_token_id  # a padded row
    trace = net.trace(ids)
    rows = torch.arange(4)
    zeros: Any = torch.zeros_like
    cases: list[tuple[dict[str, Any], int]] = [
        ({"resid:0/pos:3": zeros}, 1),
        ({"attn:1/pos:last": zeros, "resid:1/pos:2": lambda h: h.flip(-1)}, 1),
        ({"mlp:1/pos:last": lambda h: h * 0.5}, 2),  # an hf edit gets the tiled rows
        ({"head:1.1/pos:last": zeros}, 1),
        ({"resid:1/pos:last": lambda h: h[rows.flip(0)]}, 1),
    ]
    for edits, copies in cases:
        replay = net.resume(trace, edits, copies)
        assert_close(replay, recomputed(net, trace, edits, copies))
        assert not torch.allclose(replay, trace.logits.repeat(copies, 1, 1)), edits


def test_the_replayed_blocks_compute_nothing_and_get_their_forward_back(gpt2: HFNet
                                                                        ) -> None:
    trace = gpt2.trace(encode(gpt2, prompts(3, seed=5)))
    calls = {0: 0, 1: 0}

    def count(block: int) -> Any:
        def hook(module: Any, args: Any) -> None:
            calls[block] += 1
        return hook

    handles = [gpt2.part(b, "mlp").register_forward_pre_hook(count(b)) for b in (0, 1)]
    try:
        gpt2.resume(trace, {"attn:1/pos:last": torch.zeros_like})
        assert calls == {0: 0, 1: 1}  # block 0 replayed, block 1 computed
        gpt2.resume(trace, {"resid:0/pos:last": torch.zeros_like})
        assert calls == {0: 0, 1: 2}  # only block 0's output edited: replayed too
    finally:
        for handle in handles:
            handle.remove()
    assert not any("forward" in vars(block) for block in gpt2.blocks)
    with pytest.raises(RuntimeError, match="edit failed"):
        gpt2.resume(trace, {"resid:0/pos:last": failing_edit})
    assert not any("forward" in vars(block) for block in gpt2.blocks)


def test_a_net_that_never_traced_replays_too(gpt2_dir: Path, gpt2: HFNet) -> None:
    trace = gpt2.trace(encode(gpt2, prompts(3, seed=6)))  # traced by another instance
    fresh = load_net(gpt2_dir)  # as an intervention actor loads it
    assert isinstance(fresh, HFNet)
    calls = [0]
    handle = fresh.part(0, "mlp").register_forward_pre_hook(
        lambda module, args: calls.__setitem__(0, calls[0] + 1))
    try:
        fresh.resume(trace, {"attn:1/pos:last": torch.zeros_like})  # probes, once
        calls[0] = 0
        patched = fresh.resume(trace, {"attn:1/pos:last": torch.zeros_like})
    finally:
        handle.remove()
    assert calls == [0]  # block 0 replayed from the other instance's trace
    assert_close(patched, recomputed(gpt2, trace, {"attn:1/pos:last": torch.zeros_like}))


def failing_edit(h: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("edit failed")


@pytest.mark.parametrize("path", ["does/not/exist", "gpt2"])
def test_a_missing_or_hub_path_is_a_model_load_error(tmp_path: Path, path: str) -> None:
    with pytest.raises(ModelLoadError, match="not a local directory") as error:
        load_net(tmp_path / path)
    assert error.value.where == str(tmp_path / path)


def test_a_directory_without_a_saved_model_is_named(tmp_path: Path) -> None:
    (tmp_path / "plot.json").write_text(json.dumps({"arch": "hf", "labels": ["A"],
                                                    "max_len": 4}))
    with pytest.raises(ModelLoadError, match="not a local Hugging Face causal LM") as error:
        load_net(tmp_path)
    assert error.value.where == str(tmp_path)


def test_a_label_of_several_tokens_is_refused_up_front(tmp_path: Path) -> None:
    save_tiny_lm(tmp_path, ["A", "red blue"])
    with pytest.raises(ModelLoadError, match="exactly one token") as error:
        load_net(tmp_path)
    assert error.value.where == "plot.json:labels.1"


@pytest.mark.slow
def test_a_text_dataset_job_runs_end_to_end_through_arch_hf(gpt2_dir: Path,
                                                            tmp_path: Path) -> None:
    task = MultipleChoiceColours(num_objects=1)
    bank = task.sample_bank(60, torch.Generator().manual_seed(4), 0.5)
    write_dataset(tmp_path / "pairs.jsonl", bank, words=VOCAB)
    spec: dict[str, Any] = {
        "model": {"path": str(gpt2_dir)}, "task": {"dataset": "pairs.jsonl"},
        "pairs": {"fit": 20, "calibration": 20, "test": 20},
        "levels": [{"granularity": "layer", "positions": ["last", "3"], "keep": 1},
                   {"granularity": "pca", "band_size": 8, "scope": "per_variable"}],
        "calibration": {"top_k": [1, 2], "strengths": [1.0, 2.0]},
        "coupling": {"epsilons": [0.1]},
    }
    context = JobContext(gpt2_dir.parent, tmp_path, tmp_path / "cache", "cpu")
    result = run_job(parse_job_spec(spec), context)
    assert [level.granularity for level in result.levels] == ["layer", "pca"]
    assert result.levels[0].sites == ["resid:0/pos:3", "resid:0/pos:last", "resid:1/pos:3",
                                      "resid:1/pos:last"]
    assert set(result.handles) == {"answer_pointer", "answer_token"}
    assert result.net["config"]["model_type"] == "gpt2"
    assert result.max_rows == 65536 // MAX_LEN
