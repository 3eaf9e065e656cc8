"""Device choice (``auto`` = CUDA when available, else CPU), seeding, and the runtime speed options
(channels-last weights, autocast precision)."""

from __future__ import annotations

import contextlib
from typing import Any, cast

import torch
from torch import nn

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


# ---------------------------------------------------------------------- speed options (runtime, not config)
#: mixed precisions offered for crafting adversarial examples in adversarial training
AMP_CHOICES = ("bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str | None) -> torch.dtype | None:
    """The autocast dtype of ``amp`` (``"bf16"``, ``"fp16"``), ``None`` for fp32; anything else a :class:`UserError`."""
    if amp is None:
        return None
    if amp not in _AMP_DTYPES:
        raise unknown_choice("mixed precision (--amp)", amp, AMP_CHOICES)
    return _AMP_DTYPES[amp]


def has_conv(model: nn.Module) -> bool:
    """``True`` if ``model`` contains a 2-D convolution (the layers ``channels_last`` speeds up)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def resolve_channels_last(requested: bool | None, device: torch.device, model: nn.Module) -> bool:
    """Whether to store ``model``'s 4-D weights channels-last (NHWC).

    ``requested`` ``None`` (the default, ``--channels-last`` not given): off.  ``True`` /
    ``False`` is taken as given.  It is opt-in because on the reference machine (AVX2,
    torch 2.13.0) training our ResNet-v2 of width 4 with channels-last weights corrupts
    the heap inside oneDNN (``free(): invalid next size``, the process aborts; widths 8
    and 16 and LeNet-5 ran), and the gain there was small (LeNet-5 AT epoch 0.93x,
    BENCHMARKS.md "Speed options"); the issue measured 0.48x per PGD step on AVX-512
    hardware.  Where it runs, the logits agree with the contiguous model's to float
    rounding (same operations, other summation order; ``tests/test_speed_options.py``).
    """
    if requested is not None:
        if not isinstance(requested, bool):
            raise UserError(f"channels_last must be true, false or null (auto), got {requested!r}")
        return requested
    return False


def apply_channels_last(model: nn.Module, on: bool) -> nn.Module:
    """``model`` with its 4-D parameters and buffers channels-last (``on``) or contiguous, in place.

    A convolution whose weight is channels-last produces channels-last outputs and
    gradients, so inputs need no conversion.  Parameters stay the same objects
    (an optimizer built before keeps working); a state dict saved from either
    layout loads into either.
    """
    layout = torch.channels_last if on else torch.contiguous_format
    to: Any = model.to   # torch's stubs lack Module.to's memory_format keyword
    return cast(nn.Module, to(memory_format=layout))


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[object]:
    """``torch.autocast`` to the dtype of ``amp`` on ``device``'s type, or a no-op context for fp32 (``None``)."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
