"""Built-in nets the engine can trace and resume, their on-disk form, and their training."""

from core.nets.base import DerivedActivations, Edit, InterventableNet, Trace
from core.nets.gru import GRUNet
from core.nets.hf import HFNet, load_hf_net
from core.nets.io import load_net, net_digest, resolve_net_dir, save_net
from core.nets.mlp import MLP
from core.nets.registry import ARCHS, build_net, validate_net_config
from core.nets.tokenizer import WordTokenizer, label_token_ids
from core.nets.train import (
    ExampleSampler,
    TrainConfig,
    TrainProgress,
    TrainReport,
    evaluate_net,
    train_net,
)
from core.nets.transformer import TransformerNet

__all__ = [
    "ARCHS",
    "MLP",
    "DerivedActivations",
    "Edit",
    "ExampleSampler",
    "GRUNet",
    "HFNet",
    "InterventableNet",
    "Trace",
    "TrainConfig",
    "TrainProgress",
    "TrainReport",
    "TransformerNet",
    "WordTokenizer",
    "build_net",
    "evaluate_net",
    "label_token_ids",
    "load_hf_net",
    "load_net",
    "net_digest",
    "resolve_net_dir",
    "save_net",
    "train_net",
    "validate_net_config",
]
