"""Target 2: our training loop (``Trainer.train_epoch``) vs a bare PyTorch loop, LeNet-5 + SCE.

Same model initialisation, optimiser (SGD lr 0.01, momentum 0.9, weight decay
1e-4), batch size (128) and data (the first ``--images`` MNIST training
images, one epoch).  The bare loop: ``randperm``, index, forward, cross-entropy,
``zero_grad``, backward, step - nothing else.  Ours: ``Trainer(config, ...).train_epoch``
called directly (``progress=False``; no validation pass, no checkpoint I/O - those
happen in ``Trainer.fit`` after the epoch and are not part of the loop).  Ours
additionally does the divergence check, the running loss/accuracy bookkeeping
and the objective's hooks.  Epochs of both are interleaved.
Target: throughput ratio ours / bare >= 0.95.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

TARGET = 0.95


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--reps", type=int, default=15, help="epochs per side")
    args = p.parse_args()
    C.setup(args)
    t0 = time.perf_counter()
    cond = C.conditions()

    import torch
    import torch.nn.functional as F

    from robustloss import datasets
    from robustloss.training.config import TrainConfig
    from robustloss.training.trainer import Trainer, build_classifier

    x, y = datasets.load("mnist", "train")
    x, y = x[:args.images].contiguous(), y[:args.images].contiguous()
    cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", batch_size=args.batch,
                      train_limit=args.images, epochs=1000)
    tmp = tempfile.TemporaryDirectory()
    trainer = Trainer(cfg, tmp.name, device="cpu", progress=False, log=lambda _m: None)
    epoch_ours = {"e": 0}

    def ours() -> None:
        trainer.train_epoch(epoch_ours["e"], x, y, augment=False)
        epoch_ours["e"] += 1

    bare_model = build_classifier(cfg)            # identical initialisation (same seed)
    bare_opt = torch.optim.SGD(bare_model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(0)
    batch = args.batch

    def bare() -> None:
        bare_model.train()
        order = torch.randperm(len(x), generator=gen)
        for b in range(0, len(x), batch):
            idx = order[b:b + batch]
            xb, yb = x[idx], y[idx]
            loss = F.cross_entropy(bare_model(xb), yb)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()

    print(f"[2] training loop: Trainer.train_epoch vs bare loop, LeNet-5 + SCE, {args.images} MNIST images, "
          f"batch {batch}")
    times = C.interleaved({"ours": ours, "bare": bare}, reps=args.reps, warmup=1)
    row = C.ratio_row(f"LeNet-5 + SCE, 1 epoch of {args.images} MNIST images, batch {batch}",
                      times, "ours", "bare", target=TARGET, higher_is_better=True, unit_scale=1.0, unit="s",
                      images_per_s_ours=args.images / C.med(times["wall"]["ours"]),
                      images_per_s_bare=args.images / C.med(times["wall"]["bare"]))
    C.print_row(row)
    print(f"    wall-clock throughput: ours {row['images_per_s_ours']:.0f} img/s, "
          f"bare {row['images_per_s_bare']:.0f} img/s")
    tmp.cleanup()
    result = {"id": "training_loop", "title": "Our training loop vs a bare PyTorch loop (throughput)",
              "target": f"≥ {TARGET}", "rows": [row], "pass": row["pass"]}
    C.finish(result, args.json, cond, t0)


if __name__ == "__main__":
    main()
