"""Tiny models from "elsewhere" for tests/test_external_models.py (imported as ``external_zoo:NAME``).

Each name is something a user could pass as ``--model external_zoo:NAME``:
factories, a class, an instance, and the broken kinds the loader must refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


def linear() -> nn.Module:
    """A linear classifier on flattened 28x28 images (logits out)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


class Linear(nn.Module):
    """The same as :func:`linear`, as a class with a different layout of parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.flatten(1))


#: an instance (no call needed)
INSTANCE = linear()
NOT_CALLABLE = 3


class _Outputs(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.net = linear()
        self.kind = kind

    def forward(self, x: Tensor) -> Any:
        logits = self.net(x)
        feats = x.flatten(1)[:, :5]
        if self.kind == "dict":
            return {"features": feats, "logits": logits}
        if self.kind == "tuple":
            return feats, logits
        return _HFOutput(logits=logits)


@dataclass
class _HFOutput:
    logits: Tensor


def dict_output() -> nn.Module:
    return _Outputs("dict")


def tuple_output() -> nn.Module:
    return _Outputs("tuple")


def object_output() -> nn.Module:
    return _Outputs("object")


def with_dropout() -> nn.Module:
    """Built in training mode with dropout: deterministic only once put in eval mode."""
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 10)).train()


class _Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = linear()

    def forward(self, x: Tensor) -> Tensor:   # noise in every mode: a randomised defence
        return self.net(x + 0.1 * torch.randn_like(x))


def noisy() -> nn.Module:
    return _Noisy()


class _StuckInTraining(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = linear()

    def train(self, mode: bool = True) -> "_StuckInTraining":
        return super().train(True)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def stuck_in_training() -> nn.Module:
    return _StuckInTraining()


def not_a_module() -> int:
    return 42


def needs_arguments(width: int) -> nn.Module:
    return nn.Linear(784, width)


def fails() -> nn.Module:
    raise RuntimeError("the factory broke\nsecond line")


@dataclass
class Payload:
    """A pickled object that ``torch.load(weights_only=True)`` must refuse."""

    value: int = 1


class ConvView(nn.Module):
    """A convolution whose output is flattened with ``.view()``, as much code written before channels-last does.

    ``.view()`` needs contiguous activations, so this model fails once its weights are channels-last.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))
