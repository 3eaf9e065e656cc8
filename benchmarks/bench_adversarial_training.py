"""Target 6: PGD-10 adversarial-training epoch / clean epoch <= 12, LeNet-5 + SCE on MNIST.

    .venv/bin/python benchmarks/bench_adversarial_training.py
    .venv/bin/python benchmarks/bench_adversarial_training.py --malloc-tune
    .venv/bin/python benchmarks/bench_adversarial_training.py --attack-onednn off

Three sides interleaved, one epoch over the first --images MNIST training images
(batch 128, SGD lr 0.01) each repetition: ``Trainer.train_epoch`` of an AT trainer
(``AdversarialConfig(method="pgd", steps=10, eps=0.3, step_size=0.01)``: targeted,
random targets, the objective's adaptive loss, last iterate), of a clean trainer,
and a bare PGD-10 AT loop (randperm, index, random targets, targeted PGD from a
random start with ``autograd.grad``, SGD step) that separates the algorithm's cost
on this machine (bare AT / clean) from our overhead (AT / bare AT).
``--attack-onednn off`` crafts (only) the AT trainer's examples with
``torch.backends.mkldnn`` disabled: a remedy measured in BENCHMARKS.md.
The kernels behind the floor: ``benchmarks/probe_attack_kernels.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import _common as C
import torch
import torch.nn.functional as F

from robustloss import datasets
from robustloss.training import AdversarialConfig, TrainConfig
from robustloss.training.trainer import build_classifier, build_optimizer


def without_onednn(run: Callable[..., Any]) -> Callable[..., Any]:
    warnings.filterwarnings("ignore", message=".*TF32.*")   # torch's note on Intel GPUs, irrelevant here

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.backends.mkldnn.flags(enabled=False):
            return run(*args, **kwargs)
    return wrapped


def bare_at(cfg: TrainConfig, adv: AdversarialConfig, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model = build_classifier(cfg)
    opt, _ = build_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> None:
        order = torch.randperm(len(x), generator=gen)
        for b in range(0, len(x), cfg.batch_size):
            xb, yb = x[order[b:b + cfg.batch_size]], y[order[b:b + cfg.batch_size]]
            tb = (yb + torch.randint(1, 10, yb.shape, generator=gen)) % 10
            model.eval()
            xa = C.bare_pgd(model, xb, tb, adv.eps, adv.step_size, adv.steps, gen, targeted=True)
            model.train()
            loss = F.cross_entropy(model(xa), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epoch


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--images", type=int, default=2560)
    p.add_argument("--reps", type=int, default=3, help="epochs per side")
    p.add_argument("--attack-onednn", choices=("on", "off"), default="on")
    args = p.parse_args()
    C.setup(args)
    x, y = datasets.load("mnist", "train")
    x, y = x[:args.images].contiguous(), y[:args.images].contiguous()
    adv = AdversarialConfig(method="pgd", steps=10, eps=0.3, step_size=0.01)
    at_cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000, adversarial=adv)
    with tempfile.TemporaryDirectory() as tmp:
        at = C.trainer(at_cfg, f"{tmp}/at")
        clean = C.trainer(TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000), f"{tmp}/clean")
        if args.attack_onednn == "off":
            at.adversary.attack.run = without_onednn(at.adversary.attack.run)
        print(f"target 6: PGD-10 AT epoch / clean epoch, LeNet-5 + SCE, {args.images} MNIST images, batch 128"
              + (", oneDNN off while crafting" if args.attack_onednn == "off" else ""))
        times = C.interleaved({"at": C.epochs(at, x, y), "clean": C.epochs(clean, x, y),
                               "bare_at": bare_at(at_cfg, adv, x, y)}, reps=args.reps)
    C.ratio(times, "at", "clean", target=12, label="AT / clean", unit="epoch")
    C.ratio(times, "bare_at", "clean", target=None, label="bare AT / clean (the algorithm's cost here)",
            unit="epoch")
    C.ratio(times, "at", "bare_at", target=None, throughput=True, label="AT vs bare AT (our overhead)",
            unit="epoch")


if __name__ == "__main__":
    main()
