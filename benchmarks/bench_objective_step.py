"""Target 1: training step time MMC / SCE <= 1.03 (LeNet-5 and ResNet-32).

    .venv/bin/python benchmarks/bench_objective_step.py
    .venv/bin/python benchmarks/bench_objective_step.py --lenet-reps 41 --resnet-reps 9

Two trainers per backbone, MMC and SCE, with the same configuration and so the same
backbone initialisation and optimiser (SGD, lr 0.01, momentum 0.9, weight decay
1e-4), batch 128.  One repetition is ``Trainer.train_epoch`` over --lenet-steps
(--resnet-steps) batches: LeNet-5 on real MNIST images, ResNet-32 (n=5, feature_dim 256) on random
3x32x32 data.  MMC and SCE repetitions are interleaved; medians are per step.
"""

from __future__ import annotations

import tempfile
from typing import Any

import _common as C
import torch

from robustloss import datasets
from robustloss.training import TrainConfig


def compare(label: str, common: dict[str, Any], x: torch.Tensor, y: torch.Tensor, steps: int, reps: int) -> None:
    """MMC against SCE on ``common`` settings; ``reps=0`` skips the case."""
    if reps == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        fns = {obj: C.epochs(C.trainer(TrainConfig(**common, objective=obj), f"{tmp}/{obj}"), x, y)
               for obj in ("mmc", "sce")}
        C.ratio(C.interleaved(fns, reps=reps), "mmc", "sce", target=1.03, label=label, per=steps, unit="step")


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--lenet-steps", type=int, default=20, help="steps per repetition, LeNet-5")
    p.add_argument("--lenet-reps", type=int, default=15)
    p.add_argument("--resnet-steps", type=int, default=2, help="steps per repetition, ResNet-32")
    p.add_argument("--resnet-reps", type=int, default=5)
    args = p.parse_args()
    C.setup(args)
    print("target 1: training step time MMC / SCE, batch 128")
    x, y = datasets.load("mnist", "train")
    n = 128 * args.lenet_steps
    compare("LeNet-5, MNIST", {"dataset": "mnist", "model": "lenet5"}, x[:n], y[:n], args.lenet_steps,
            args.lenet_reps)
    gen = torch.Generator().manual_seed(0)
    n = 128 * args.resnet_steps
    compare("ResNet-32 (n=5, d=256), random 3x32x32",
            {"dataset": "cifar10", "model": "resnet", "model_options": {"n": 5, "feature_dim": 256}},
            torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen),
            args.resnet_steps, args.resnet_reps)


if __name__ == "__main__":
    main()
