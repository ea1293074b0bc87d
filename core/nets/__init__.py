"""Built-in nets the engine can trace and resume, their on-disk form, and their training."""

from core.nets.base import Edit, InterventableNet, Trace
from core.nets.gru import GRUNet
from core.nets.io import load_net, net_digest, resolve_net_dir, save_net
from core.nets.mlp import MLP
from core.nets.registry import ARCHS, build_net, validate_net_config
from core.nets.train import (
    ExampleSampler,
    TrainConfig,
    TrainProgress,
    TrainReport,
    evaluate_net,
    train_net,
)

__all__ = [
    "ARCHS",
    "MLP",
    "Edit",
    "ExampleSampler",
    "GRUNet",
    "InterventableNet",
    "Trace",
    "TrainConfig",
    "TrainProgress",
    "TrainReport",
    "build_net",
    "evaluate_net",
    "load_net",
    "net_digest",
    "resolve_net_dir",
    "save_net",
    "train_net",
    "validate_net_config",
]
