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


#: the torch CPU capabilities on which channels-last weights are on by default (measured faster with
#: the same results: BENCHMARKS.md "Speed options", run on an Intel Xeon with AVX-512 BF16 / AMX)
CHANNELS_LAST_CPU_CAPABILITIES = ("AVX512",)


def resolve_channels_last(requested: bool | None, device: torch.device, model: nn.Module) -> bool:
    """Whether to store ``model``'s 4-D weights channels-last (NHWC).

    ``requested`` ``True`` / ``False`` is taken as given.  ``None`` (the default,
    neither ``--channels-last`` nor ``--no-channels-last``): on for a model with 2-D
    convolutions on a CPU whose torch kernels are AVX-512
    (``torch.backends.cpu.get_cpu_capability()``, which follows ``ATEN_CPU_CAPABILITY``),
    off otherwise.  The measurements behind the rule (BENCHMARKS.md "Speed options",
    torch 2.13.0, LeNet-5, one thread, fp32):

    * AVX-512 (Intel Xeon with AMX): PGD-10 call 0.70x, PGD-10 adversarial-training
      epoch 0.68x, clean epoch 0.92-0.95x, ResNet-32 attack 0.87x; the same robust
      accuracy, logits within 6e-6.  oneDNN's input-gradient kernel of the 1-channel
      first convolution takes a fast path when the incoming gradient is channels-last.
    * AVX2 (AMD EPYC): adversarial-training epoch 0.93x, and training our ResNet-v2 of
      width 4 with channels-last weights corrupted the heap inside oneDNN
      (``free(): invalid next size``; it does not on the AVX-512 machine); so off.
    * CUDA: not measured here; off (channels-last pays off on GPUs mainly with
      mixed precision; pass ``--channels-last`` to try it).

    The logits agree with the contiguous model's to float rounding (same operations,
    another summation order; ``tests/test_speed_options.py``).
    """
    if requested is not None:
        if not isinstance(requested, bool):
            raise UserError(f"channels_last must be true, false or null (auto), got {requested!r}")
        return requested
    return (device.type == "cpu" and torch.backends.cpu.get_cpu_capability() in CHANNELS_LAST_CPU_CAPABILITIES
            and has_conv(model))


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
