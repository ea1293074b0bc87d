"""The causal side of the engine: causal models, built-in tasks, pair banks and datasets."""

from core.causal.addition import BinaryAddition, adder_causal_model
from core.causal.bank import Banks, PairBank, concat_banks
from core.causal.dataset import parse_dataset_bytes, read_dataset, split_dataset, write_dataset
from core.causal.heq import HierarchicalEquality, heq_causal_model
from core.causal.model import CausalModel, Variable
from core.causal.registry import BUILTIN_TASKS, bank_generators, build_task, make_banks
from core.causal.sampling import label_pairs, sample_controlled_bank
from core.causal.task import CausalTask

__all__ = [
    "BUILTIN_TASKS",
    "Banks",
    "BinaryAddition",
    "CausalModel",
    "CausalTask",
    "HierarchicalEquality",
    "PairBank",
    "Variable",
    "adder_causal_model",
    "bank_generators",
    "build_task",
    "concat_banks",
    "heq_causal_model",
    "label_pairs",
    "make_banks",
    "parse_dataset_bytes",
    "read_dataset",
    "sample_controlled_bank",
    "split_dataset",
    "write_dataset",
]
