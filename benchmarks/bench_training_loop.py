"""Target 2: our training loop / a bare PyTorch loop, throughput >= 0.95 (LeNet-5 + SCE, MNIST).

    .venv/bin/python benchmarks/bench_training_loop.py                  # 9 epochs per side
    .venv/bin/python benchmarks/bench_training_loop.py --reps 15
    .venv/bin/python benchmarks/bench_training_loop.py --malloc-tune

Same model initialisation, optimiser (SGD, lr 0.01, momentum 0.9, weight decay
1e-4), batch size (128) and data (the first --images MNIST training images, one
epoch per repetition).  Ours: ``Trainer.train_epoch`` (no validation, no
checkpoint: those are ``fit``'s, after the epoch); it also checks for divergence,
keeps the running loss and accuracy and calls the objective's hooks.  Bare:
randperm, index, forward, cross-entropy, zero_grad, backward, step.
"""

from __future__ import annotations

import tempfile

import _common as C
import torch
import torch.nn.functional as F

from robustloss import datasets
from robustloss.training import TrainConfig
from robustloss.training.trainer import build_classifier, build_optimizer


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=9, help="epochs per side")
    args = p.parse_args()
    C.setup(args)
    x, y = datasets.load("mnist", "train")
    x, y = x[:args.images].contiguous(), y[:args.images].contiguous()
    cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000)
    tmp = tempfile.TemporaryDirectory()
    ours = C.epochs(C.trainer(cfg, tmp.name), x, y)
    model = build_classifier(cfg)             # the same initialisation (seeded)
    opt, _ = build_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(0)

    def bare() -> None:
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for b in range(0, len(x), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    print(f"target 2: Trainer.train_epoch vs a bare loop, LeNet-5 + SCE, {args.images} MNIST images, batch 128")
    times = C.interleaved({"ours": ours, "bare": bare}, reps=args.reps)
    C.ratio(times, "ours", "bare", target=0.95, throughput=True, label="one epoch", unit="epoch")
    print(f"    wall-clock throughput: ours {args.images / C.med(times['wall']['ours']):.0f} img/s, "
          f"bare {args.images / C.med(times['wall']['bare']):.0f} img/s")
    tmp.cleanup()


if __name__ == "__main__":
    main()
