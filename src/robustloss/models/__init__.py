"""Backbones: ``x -> z`` feature extractors (the objective supplies the head)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from robustloss.models.cnn import CNN3
from robustloss.models.lenet import LeNet5
from robustloss.models.randomization import DEFENSES, RandomResizePad, apply_defense, randomized
from robustloss.models.resnet import PreActResNet
from robustloss.registry import Registry

MODELS: Registry[nn.Module] = Registry("model", skip=("in_channels", "image_size"))
MODELS.add("lenet5", LeNet5)
MODELS.add("resnet", PreActResNet)
MODELS.add("cnn3", CNN3)


def build_backbone(name: str, in_channels: int, image_size: int,
                   options: Mapping[str, Any] | None = None) -> nn.Module:
    """Build backbone ``name`` for images of ``in_channels x image_size x image_size``."""
    return MODELS.build(name, options, in_channels=in_channels, image_size=image_size)


__all__ = ["CNN3", "DEFENSES", "LeNet5", "MODELS", "PreActResNet", "RandomResizePad", "apply_defense",
           "build_backbone", "randomized"]
