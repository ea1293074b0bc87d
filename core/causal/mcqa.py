"""Multiple-choice QA, "copy colours": facts give objects colours, a question asks one
object's colour, and the answer is the letter of the option holding that colour.

    apple is red . sky is blue . what colour is apple ? A green B red C blue answer :  -> B

Variables: ``answer_token``, the colour of the queried object (a colour index), and
``answer_pointer``, the option index holding it; the output is the letter at the pointer.
Source prompts reuse the base's options in a random order and ask about a colour among
them, so both interchanges are always defined and they disagree whenever the source's
colour sits at different options in the two prompts: the families that separate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from core.causal.bank import PairBank, concat_banks
from core.causal.generated import GeneratedTask
from core.causal.model import CausalModel, Variable
from core.causal.sampling import label_pairs
from core.errors import TaskError
from core.nets.base import InterventableNet
from core.nets.tokenizer import WordTokenizer, label_token_ids

OBJECTS = ("apple", "banana", "sky", "grass", "cherry", "lemon", "snow", "coal", "rose",
           "leaf", "sea", "sun")
COLOURS = ("red", "blue", "green", "yellow", "black", "white", "pink", "orange")
LETTERS = ("A", "B", "C", "D")
WORDS = ("is", ".", "what", "colour", "?", "answer", ":")
VOCAB = ("<pad>", *WORDS, *OBJECTS, *COLOURS, *LETTERS)


def mcqa_causal_model(num_objects: int, num_options: int) -> CausalModel:
    """Inputs ``o{k}``, ``c{k}`` (object and colour of fact k), ``q`` (the queried fact),
    ``x{j}`` (option j's colour), all (B,) long; ``answer`` is the pointer."""
    colours = [f"c{k}" for k in range(num_objects)]
    options = [f"x{j}" for j in range(num_options)]

    def answer_token(q: Tensor, *cs: Tensor) -> Tensor:
        return torch.stack(cs, dim=-1).gather(-1, q.unsqueeze(-1)).squeeze(-1)

    def answer_pointer(token: Tensor, *xs: Tensor) -> Tensor:
        return (torch.stack(xs, dim=-1) == token.unsqueeze(-1)).long().argmax(dim=-1)

    return CausalModel(
        [*(Variable(f"o{k}") for k in range(num_objects)), *map(Variable, colours),
         Variable("q"), *map(Variable, options),
         Variable("answer_token", ("q", *colours), answer_token),
         Variable("answer_pointer", ("answer_token", *options), answer_pointer),
         Variable("answer", ("answer_pointer",), torch.clone)],
        outputs=["answer"],
    )


class MultipleChoiceColours(GeneratedTask):
    """The MCQA copy-colours task (implements ``CausalTask``) over a word vocabulary.

    Args:
        num_objects: facts in the prompt (distinct objects). One by default: with two, the
            default net sits at ~87 % (answering from any fact colour among the options)
            for thousands of steps before it learns to read the question.
        num_options: lettered options (distinct colours, one of them the answer).
    """

    name: str = "mcqa"
    variables: tuple[str, ...] = ("answer_pointer", "answer_token")

    def __init__(self, num_objects: int = 1, num_options: int = 3) -> None:
        if num_objects > len(OBJECTS):
            raise TaskError(f"must be at most {len(OBJECTS)}", "task.params.num_objects")
        if num_options > len(LETTERS):
            raise TaskError(f"must be at most {len(LETTERS)}", "task.params.num_options")
        self.params: dict[str, Any] = {"num_objects": num_objects, "num_options": num_options}
        self.num_objects, self.num_options = num_objects, num_options
        self.tokenizer = WordTokenizer(VOCAB)
        self.length = 4 * num_objects + 5 + 2 * num_options + 2
        self.input_shape: tuple[int, ...] = (self.length,)
        self.output_shape: tuple[int, int] = (1, num_options)
        self.labels = list(LETTERS[:num_options])
        self.label_ids = label_token_ids(self.tokenizer.tokenize, self.labels)
        self.causal = mcqa_causal_model(num_objects, num_options)
        ids = self.tokenizer.ids
        self._object_ids = torch.tensor([ids[o] for o in OBJECTS])
        self._colour_ids = torch.tensor([ids[c] for c in COLOURS])

    def prompt(self, values: Mapping[str, int]) -> str:
        """The text of one example (causal input name -> index)."""
        facts = " ".join(f"{OBJECTS[values[f'o{k}']]} is {COLOURS[values[f'c{k}']]} ."
                         for k in range(self.num_objects))
        options = " ".join(f"{LETTERS[j]} {COLOURS[values[f'x{j}']]}"
                           for j in range(self.num_options))
        query = OBJECTS[values[f"o{values['q']}"]]
        return f"{facts} what colour is {query} ? {options} answer :"

    def prompts(self, inputs: Mapping[str, Tensor]) -> list[str]:
        """The texts of a batch of causal inputs."""
        rows = [dict(zip(inputs, values, strict=True))
                for values in zip(*(v.tolist() for v in inputs.values()), strict=True)]
        return [self.prompt(row) for row in rows]

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """(B, length) long token ids, the same as tokenizing ``prompts(inputs)``."""
        ids = self.tokenizer.ids
        batch = inputs["q"].shape[0]

        def word(name: str) -> Tensor:
            return torch.full((batch,), ids[name], dtype=torch.long)

        columns: list[Tensor] = []
        for k in range(self.num_objects):
            columns += [self._object_ids[inputs[f"o{k}"]], word("is"),
                        self._colour_ids[inputs[f"c{k}"]], word(".")]
        objects = torch.stack([inputs[f"o{k}"] for k in range(self.num_objects)], dim=-1)
        query = objects.gather(-1, inputs["q"].unsqueeze(-1)).squeeze(-1)
        columns += [word("what"), word("colour"), word("is"), self._object_ids[query],
                    word("?")]
        for j in range(self.num_options):
            columns += [word(LETTERS[j]), self._colour_ids[inputs[f"x{j}"]]]
        columns += [word("answer"), word(":")]
        return torch.stack(columns, dim=1)

    def sample_inputs(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """n prompts: distinct objects, random colours, options holding the answer."""
        objects = torch.rand(n, len(OBJECTS), generator=generator).argsort(dim=1)
        colours = torch.randint(len(COLOURS), (n, self.num_objects), generator=generator)
        q = torch.randint(self.num_objects, (n,), generator=generator)
        options = torch.rand(n, len(COLOURS), generator=generator).argsort(dim=1)
        options = options[:, :self.num_options].clone()
        answer = colours.gather(1, q.unsqueeze(1)).squeeze(1)
        missing = ~(options == answer.unsqueeze(1)).any(dim=1)
        slot = torch.randint(self.num_options, (n,), generator=generator)
        options[missing, slot[missing]] = answer[missing]
        out = {f"o{k}": objects[:, k] for k in range(self.num_objects)}
        out |= {f"c{k}": colours[:, k] for k in range(self.num_objects)}
        out["q"] = q
        return out | {f"x{j}": options[:, j] for j in range(self.num_options)}


    def draw_pairs(self, n: int, generator: torch.Generator) -> PairBank:
        """n pairs; the source asks about one of the base's option colours, with the
        base's options shuffled."""
        base = self.sample_inputs(n, generator)
        source = self.sample_inputs(n, generator)
        options = torch.stack([base[f"x{j}"] for j in range(self.num_options)], dim=1)
        order = torch.rand(n, self.num_options, generator=generator).argsort(dim=1)
        shuffled = options.gather(1, order)
        for j in range(self.num_options):
            source[f"x{j}"] = shuffled[:, j]
        asked = options.gather(1, torch.randint(self.num_options, (n, 1),
                                                generator=generator)).squeeze(1)
        colours = torch.stack([source[f"c{k}"] for k in range(self.num_objects)], dim=1)
        colours.scatter_(1, source["q"].unsqueeze(1), asked.unsqueeze(1))
        for k in range(self.num_objects):
            source[f"c{k}"] = colours[:, k]
        return label_pairs(self.causal, self.encode_candidates, base, source, self.variables)

    def encode_candidates(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The net inputs of candidate pairs (``encode``; a task whose encoding is costly
        keeps the causal inputs here and encodes only the pairs its banks keep)."""
        return self.encode(inputs)

    def encode_kept(self, bank: PairBank) -> PairBank:
        """A bank of kept candidate pairs as the net reads them: as it is here (its inputs
        are encoded already); a task that keeps causal values in candidates encodes them."""
        return bank

    def for_net(self, net: InterventableNet) -> MultipleChoiceColours:
        """This task as the given net reads it: the word prompts for our own transformer,
        CopyColors text prompts tokenized by a Hugging Face model's tokenizer
        (``core.causal.mcqa_text``).

        Raises:
            TaskError: the model's tokenizer splits an answer letter, or the model reads
                other labels than the letters.
        """
        tokenizer: Any = getattr(net, "tokenizer", None)
        encode = net.text_encoder()
        if net.config.get("arch") != "hf" or tokenizer is None or encode is None:
            return self
        from core.causal.mcqa_text import CopyColorsPrompts

        return CopyColorsPrompts(
            self.num_objects, self.num_options,
            lambda text: list(tokenizer.encode(text, add_special_tokens=False)), encode,
            int(net.input_shape[0]), list(net.config["label_token_ids"]))

    def draw_answer_position_pairs(self, n: int, generator: torch.Generator) -> PairBank:
        """n pairs of the paper's answerPosition family: the source is the base prompt with
        the answer's option swapped with another, so only the pointer moves."""
        base = self.sample_inputs(n, generator)
        options = torch.stack([base[f"x{j}"] for j in range(self.num_options)], dim=1)
        colours = torch.stack([base[f"c{k}"] for k in range(self.num_objects)], dim=1)
        answer = colours.gather(1, base["q"].unsqueeze(1))
        slot = (options == answer).long().argmax(dim=1)
        other = (slot + torch.randint(1, self.num_options, (n,), generator=generator)
                 ) % self.num_options
        rows = torch.arange(n)
        swapped = options.clone()
        swapped[rows, slot], swapped[rows, other] = options[rows, other], options[rows, slot]
        source = dict(base) | {f"x{j}": swapped[:, j] for j in range(self.num_options)}
        return label_pairs(self.causal, self.encode_candidates, base, source,
                           self.variables)

    def sample_paper_bank(self, n: int, generator: torch.Generator) -> PairBank:
        """n pairs as the paper's MCQA banks, adapted to fixed option letters: half of the
        answerPosition family (the pointer moves, the answer colour stays), half of the
        family that moves both (``draw_pairs``), unfiltered, in random order."""
        half = n // 2
        bank = concat_banks([self.draw_answer_position_pairs(half, generator),
                             self.draw_pairs(n - half, generator)])
        return self.encode_kept(bank.subset(torch.randperm(bank.size, generator=generator)))

    def named_positions(self) -> dict[str, dict[str, int]]:
        """Positions computed from the prompt: the queried object and each option's colour."""
        ids = self.tokenizer.ids
        named = {"query": {"token": ids["?"], "offset": -1}}
        for j in range(self.num_options):
            named[f"option_{LETTERS[j].lower()}"] = {"token": ids[LETTERS[j]], "offset": 1}
        return named

    def default_net_config(self) -> dict[str, Any]:
        return {
            "arch": "transformer", "vocab_size": len(VOCAB), "d_model": 32, "n_layers": 3,
            "n_heads": 4, "d_mlp": 64, "max_len": self.length,
            "label_token_ids": self.label_ids, "pad_token_id": None,
            "named_positions": self.named_positions(),
        }

    def default_levels(self) -> list[dict[str, Any]]:
        # stage A: positions (index positions, the last one as ``last``) at block (L-1)//2;
        # then every block at each variable's kept positions; then PCA bands at its site
        positions = [*map(str, range(self.length - 1)), "last"]
        return [{"granularity": "position", "keep": 2, "positions": positions},
                {"granularity": "layer", "keep": 1, "scope": "per_variable"},
                {"granularity": "pca", "band_size": 4, "scope": "per_variable"}]
