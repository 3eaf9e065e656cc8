"""Diagnostic behind the bf16 target of "Speed options": LeNet-5's max-pooling by dtype and layout.

    .venv/bin/python benchmarks/probe_pooling_layout.py              # pooling only (~10 s)
    .venv/bin/python benchmarks/probe_pooling_layout.py --profile    # + a profiled PGD-10 AT epoch
    .venv/bin/python benchmarks/probe_pooling_layout.py --profile --crafting fp32

``F.max_pool2d(x, 2)`` forward + input gradient on LeNet-5's two pooled activations at
batch 128 (6x28x28 and 16x10x10), fp32 and bf16, contiguous and channels-last: median
CPU ms per call, interleaved (BENCHMARKS.md, Method).  ``--profile`` runs one PGD-10
adversarial-training epoch of LeNet-5 (1280 MNIST images, channels-last weights, bf16
crafting, or fp32 with ``--crafting fp32``) under ``torch.profiler`` and prints the operators by self CPU time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import _common as C
import torch
import torch.nn.functional as F

from robustloss import datasets
from robustloss.training import AdversarialConfig, TrainConfig

SHAPES = ((128, 6, 28, 28), (128, 16, 10, 10))   # LeNet-5's activations before its two poolings
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def pool_call(x: torch.Tensor) -> Callable[[], None]:
    """One max-pooling forward and its input gradient on ``x`` (a leaf requiring grad)."""
    def call() -> None:
        out = F.max_pool2d(x, 2)
        torch.autograd.grad(out, x, torch.ones_like(out))
    return call


def pooling(reps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        fns: dict[str, Callable[[], None]] = {}
        for dname, dtype in DTYPES.items():
            for lname, layout in LAYOUTS.items():
                x = torch.rand(shape, generator=gen).to(dtype).contiguous(memory_format=layout).requires_grad_(True)
                fns[f"{dname} {lname}"] = pool_call(x)
        times = C.interleaved(fns, reps=reps)
        cells = ", ".join(f"{name} {1e3 * C.med(times['cpu'][name]):.2f} ms" for name in fns)
        print(f"max_pool2d 2x2 forward + input gradient, {'x'.join(map(str, shape))}: {cells} ({reps} reps)")


def profile(images: int, crafting: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x, y = datasets.load("mnist", "train")
    x, y = x[:images].contiguous(), y[:images].contiguous()
    adv = AdversarialConfig(method="pgd", steps=10, eps=0.3, step_size=0.01)
    cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000, adversarial=adv,
                      amp=None if crafting == "fp32" else crafting)
    with tempfile.TemporaryDirectory() as tmp:
        epoch = C.epochs(C.trainer(cfg, f"{tmp}/at", channels_last=True), x, y)
        epoch()   # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            epoch()
    print(f"PGD-10 AT epoch, {images} images, channels-last weights, {crafting} crafting, by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--profile", action="store_true", help="also profile one PGD-10 AT epoch (bf16 crafting)")
    p.add_argument("--images", type=int, default=1280, help="images of the profiled epoch")
    p.add_argument("--crafting", choices=("bf16", "fp32"), default="bf16", help="precision of the profiled crafting")
    args = p.parse_args()
    C.setup(args)
    pooling(args.reps)
    if args.profile:
        profile(args.images, args.crafting)


if __name__ == "__main__":
    main()
