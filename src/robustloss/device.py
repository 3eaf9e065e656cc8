"""Device choice (``auto`` = CUDA when available, else CPU) and seeding."""

from __future__ import annotations

import torch

from robustloss.errors import UserError, unknown_choice

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda`` without a GPU is an error."""
    base = name.split(":")[0]
    if base not in DEVICE_CHOICES:
        raise unknown_choice("device", name, DEVICE_CHOICES)
    if base == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def stream_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator for one named random stream (e.g. epoch 3's shuffling), independent of the others."""
    value = int(seed) & 0xFFFFFFFF
    for key in keys:
        value = (value * 1_000_003 + int(key) + 0x9E3779B9) & 0xFFFFFFFFFFFF
    return torch.Generator().manual_seed(value)
