"""Hugging Face resume: blocks before the first edit replayed from the trace vs recomputed.

``HFNet.resume`` reruns the Hugging Face forward with hooks at the edited locations; the
blocks before the first edited one return their traced outputs instead of computing them
(``replay_prefix``). This script measures, in one run on the same inputs, the interchange of
the whole residual stream at every position of one block (pos 0..T-1), for a block near the
start, the middle and the end of a randomly initialised GPT-2 (speed does not depend on the
weights), with the prefix replayed and recomputed; interventions per second, the speed-up
and the largest logit difference. Needs ``transformers`` (``pip install .[hf]``). Run
single-threaded for comparable CPU figures:

    OMP_NUM_THREADS=1 python bench/hf_resume.py
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from interventions import best_of, write_rows  # bench/ is the script's folder
from torch import Tensor

from core.nets.hf import HFNet


def word_tokenizer(words: list[str]) -> Any:
    """A word-level tokenizer over ``words`` (the first is the pad token)."""
    import tokenizers
    import transformers

    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {w: i for i, w in enumerate(words)}, unk_token=words[0]))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=word_level,
                                                pad_token=words[0], unk_token=words[0])


def gpt2_net(layers: int, width: int, heads: int, length: int, vocab: int) -> HFNet:
    import transformers

    torch.manual_seed(0)
    words = ["<pad>", *(f"w{i}" for i in range(1, vocab))]
    config = transformers.GPT2Config(vocab_size=vocab, n_embd=width, n_layer=layers,
                                     n_head=heads, n_positions=length)
    lm = transformers.GPT2LMHeadModel(config).eval()
    net = HFNet(lm, word_tokenizer(words), {"arch": "hf", "labels": ["w1", "w2", "w3"],
                                            "max_len": length})
    net.requires_grad_(False)
    return net


def measure(layers: int, width: int, heads: int, length: int, rows: int, repeats: int
            ) -> list[dict[str, Any]]:
    net = gpt2_net(layers, width, heads, length, vocab=64)
    generator = torch.Generator().manual_seed(0)
    base = net.trace(torch.randint(1, 64, (rows, length), generator=generator))
    source = net.trace(torch.randint(1, 64, (rows, length), generator=generator))
    out = []
    for block in sorted({0, layers // 2, layers - 1}):
        locations = [f"resid:{block}/pos:{p}" for p in range(length)]
        logits: dict[bool, Tensor] = {}

        def sweep(replay: bool, locations: list[str] = locations,
                  logits: dict[bool, Tensor] = logits) -> None:
            net.replay_prefix = replay
            with torch.no_grad():
                logits[replay] = torch.cat([
                    net.resume(base, {loc: lambda h, s=source.activations[loc]: s})
                    for loc in locations])

        t_replay = best_of(lambda: sweep(True), repeats, torch.device("cpu"))
        t_full = best_of(lambda: sweep(False), repeats, torch.device("cpu"))
        interventions = rows * len(locations)
        out.append({
            "block": block, "blocks": layers, "positions": length, "rows": rows,
            "blocks_replayed": block + 1,
            "recomputed_interventions_per_s": interventions / t_full,
            "replayed_interventions_per_s": interventions / t_replay,
            "speedup": t_full / t_replay,
            "max_logit_difference": float((logits[True] - logits[False]).abs().max()),
        })
    net.replay_prefix = True
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--length", type=int, default=24)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/hf_resume.json"))
    args = parser.parse_args()
    rows = measure(args.layers, args.width, args.heads, args.length, args.rows, args.repeats)
    print(f"GPT-2, {args.layers} blocks, d_model {args.width}, {args.length} tokens, "
          f"{args.rows} rows, cpu, {torch.get_num_threads()} threads")
    print(f"{'edit at':<10}{'replayed':>9}{'recomputed iv/s':>17}{'replayed iv/s':>15}"
          f"{'speed-up':>10}{'max |Δ logit|':>15}")
    for r in rows:
        print(f"{'resid:' + str(r['block']):<10}{r['blocks_replayed']:>9}"
              f"{r['recomputed_interventions_per_s']:>17,.0f}"
              f"{r['replayed_interventions_per_s']:>15,.0f}{r['speedup']:>9.2f}×"
              f"{r['max_logit_difference']:>15.1e}")
    write_rows(args.out, rows, device="cpu", **{k: getattr(args, k) for k in
                                                ("layers", "width", "heads", "length", "rows")})


if __name__ == "__main__":
    main()
