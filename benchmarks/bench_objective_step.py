"""Target 1: training step time of MMC vs SCE (forward + backward + SGD step of backbone + objective).

Two backbones, batch 128:

* LeNet-5 on real MNIST batches (1x28x28), feature_dim 84;
* ResNet-32 (PreActResNet n=5, feature_dim 256) on random 3x32x32 data.

Both objectives get the same backbone initialisation (``build_classifier`` seeds
before building the backbone) and the optimiser of ``build_optimizer``
(SGD, lr 0.01, momentum 0.9, weight decay 1e-4).  One timed repetition is
``--steps`` consecutive steps; MMC and SCE repetitions are interleaved.
Target: median step time MMC / SCE <= 1.03.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

TARGET = 1.03


def make_step(objective: str, model_name: str, xs: list, ys: list):
    import torch

    from robustloss.training.config import TrainConfig
    from robustloss.training.trainer import build_classifier, build_optimizer

    if model_name == "lenet5":
        cfg = TrainConfig(dataset="mnist", model="lenet5", objective=objective)
    else:
        cfg = TrainConfig(dataset="cifar10", model="resnet", model_options={"n": 5, "feature_dim": 256},
                          objective=objective)
    model = build_classifier(cfg)
    opt, _ = build_optimizer(cfg, model)
    model.train()
    state = {"i": 0}

    def step() -> torch.Tensor:
        i = state["i"] % len(xs)
        state["i"] += 1
        z = model.features(xs[i])
        loss = model.objective.loss(z, ys[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    assert bool(torch.isfinite(step()))
    return step


def bench_case(model_name: str, steps: int, reps: int, batch: int) -> dict:
    import torch

    from robustloss import datasets

    if model_name == "lenet5":
        x, y = datasets.load("mnist", "train")
        n_batches = 8
        xs = [x[i * batch:(i + 1) * batch].contiguous() for i in range(n_batches)]
        ys = [y[i * batch:(i + 1) * batch].contiguous() for i in range(n_batches)]
        case = f"LeNet-5, MNIST 1x28x28, batch {batch}"
    else:
        g = torch.Generator().manual_seed(0)
        xs = [torch.rand(batch, 3, 32, 32, generator=g) for _ in range(2)]
        ys = [torch.randint(0, 10, (batch,), generator=g) for _ in range(2)]
        case = f"ResNet-32 (n=5, d=256), random 3x32x32, batch {batch}"
    sides = {name: make_step(name, model_name, xs, ys) for name in ("mmc", "sce")}

    def repeat(fn):
        def run():
            for _ in range(steps):
                fn()
        return run

    times = C.interleaved({k: repeat(f) for k, f in sides.items()}, reps=reps, warmup=1)
    return C.ratio_row(case, times, "mmc", "sce", target=TARGET, per=steps, per_label="step",
                       steps_per_rep=steps)


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lenet-steps", type=int, default=20, help="steps per timed repetition (LeNet-5)")
    p.add_argument("--lenet-reps", type=int, default=21)
    p.add_argument("--resnet-steps", type=int, default=2, help="steps per timed repetition (ResNet-32)")
    p.add_argument("--resnet-reps", type=int, default=7)
    p.add_argument("--skip-resnet", action="store_true")
    args = p.parse_args()
    C.setup(args)
    t0 = time.perf_counter()
    cond = C.conditions()
    print("[1] training step time, MMC / SCE (forward + backward + SGD step)")
    rows = [bench_case("lenet5", args.lenet_steps, args.lenet_reps, args.batch)]
    C.print_row(rows[-1])
    if not args.skip_resnet:
        rows.append(bench_case("resnet", args.resnet_steps, args.resnet_reps, args.batch))
        C.print_row(rows[-1])
    result = {"id": "objective_step", "title": "Training step time, MMC / SCE",
              "target": f"≤ {TARGET}", "rows": rows, "pass": all(r["pass"] for r in rows)}
    C.finish(result, args.json, cond, t0)


if __name__ == "__main__":
    main()
