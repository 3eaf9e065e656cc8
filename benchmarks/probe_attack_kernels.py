"""Diagnostic behind target 6: what an attack step costs next to a training step, oneDNN on and off.

    .venv/bin/python benchmarks/probe_attack_kernels.py                    # LeNet-5, MNIST, batch 128
    .venv/bin/python benchmarks/probe_attack_kernels.py --malloc-tune
    .venv/bin/python benchmarks/probe_attack_kernels.py --model resnet     # ResNet-32, random 3x32x32

Median CPU time per call (each repetition: 10 calls), interleaved in one process,
with torch's oneDNN (mkldnn) convolutions on and off, of: a training step
(forward, the objective's loss, backward w.r.t. the weights, SGD step), an attack
step (forward, CE, ``autograd.grad`` w.r.t. the input), a forward, and (LeNet-5)
the input-gradient of the first convolution alone; with minor page faults per
call.  Prints the floor of a PGD-10 AT epoch these kernels imply:
(10 attack steps + 1 forward + 1 training step) / training step.
"""

from __future__ import annotations

import resource
import warnings
from collections.abc import Callable

import _common as C
import torch
import torch.nn.functional as F

from robustloss import datasets
from robustloss.training import TrainConfig
from robustloss.training.trainer import build_classifier, build_optimizer

CALLS = 10


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--model", choices=("lenet5", "resnet"), default="lenet5")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    C.setup(args)
    warnings.filterwarnings("ignore", message=".*TF32.*")   # torch's note on Intel GPUs, irrelevant here
    if args.model == "lenet5":
        cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce")
        x, y = (t[:128].contiguous() for t in datasets.load("mnist", "val"))
    else:
        cfg = TrainConfig(dataset="cifar10", model="resnet", model_options={"n": 5, "feature_dim": 256},
                          objective="sce")
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(128, 3, 32, 32, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    model = build_classifier(cfg)
    opt, _ = build_optimizer(cfg, model)

    def train_step() -> None:
        model.train()
        loss = model.objective.loss(model.features(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def attack_step() -> None:
        model.eval()
        xa = x.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)

    def forward() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    kernels: dict[str, Callable[[], None]] = {"train_step": train_step, "attack_step": attack_step,
                                              "forward": forward}
    if args.model == "lenet5":
        conv1 = model.backbone.conv[0]
        grad_out = torch.randn(128, 6, 28, 28, generator=torch.Generator().manual_seed(0))
        kernels["conv1_input_grad"] = lambda: torch.ops.aten.convolution_backward(
            grad_out, x, conv1.weight, [6], [1, 1], [2, 2], [1, 1], False, [0, 0], 1, [True, False, False])
    faults: dict[str, list[int]] = {}

    def timed(name: str, kernel: Callable[[], None], onednn: bool) -> Callable[[], None]:
        def run() -> None:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            with torch.backends.mkldnn.flags(enabled=onednn):
                for _ in range(CALLS):
                    kernel()
            faults.setdefault(name, []).append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // CALLS)
        return run

    fns = {f"{k} oneDNN {'on' if on else 'off'}": timed(f"{k} oneDNN {'on' if on else 'off'}", fn, on)
           for k, fn in kernels.items() for on in (True, False)}
    times = C.interleaved(fns, reps=args.reps)
    ms = {name: C.med(t) / CALLS * 1e3 for name, t in times["cpu"].items()}
    print(f"{args.model}, batch 128, {args.reps} interleaved repetitions of {CALLS} calls: median CPU per call")
    for name in fns:
        print(f"  {name:<27} {ms[name]:8.2f} ms  {C.med(faults[name]):5.0f} minor page faults per call")
    for on in ("on", "off"):
        floor = (10 * ms[f"attack_step oneDNN {on}"] + ms[f"forward oneDNN {on}"]) / ms[f"train_step oneDNN {on}"] + 1
        print(f"  floor of PGD-10 AT / clean, oneDNN {on}: {floor:.1f}x")


if __name__ == "__main__":
    main()
