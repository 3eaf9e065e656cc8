"""Speed options (issue 12, item 5): channels-last weights, bf16 autocast, parameters frozen while crafting.

    .venv/bin/python benchmarks/bench_speed_options.py
    .venv/bin/python benchmarks/bench_speed_options.py --pgd-reps 15 --at-reps 5 --resnet-reps 5
    .venv/bin/python benchmarks/bench_speed_options.py --resnet-reps 0      # LeNet-5 only

Every ratio is against fp32 eager with contiguous weights, measured in the same run
(interleaved repetitions, CPU time, medians; see BENCHMARKS.md, Method), LeNet-5, batch 128:

* **PGD call**: ``PGD(eps=0.1, steps=10, step 0.01, final_iterate=True).run`` on the
  briefly trained SCE LeNet-5 (every example runs every step: 10 gradient steps + 3
  forwards), as fp32, channels_last, bf16 autocast, both, and fp32 with the parameters
  frozen (``requires_grad_(False)``) during the call.  Printed beside: robust accuracy of
  each variant (same random start) and the largest logit difference channels_last vs
  contiguous.
* **PGD-10 AT epoch** (``Trainer.train_epoch`` over --at-images MNIST images, PGD-10
  AT eps 0.3 step 0.01, SCE): the same variants (``Trainer(channels_last=...)``,
  ``TrainConfig.amp``; frozen: the adversary's call wrapped), and clean epochs (fp32 and
  channels_last) for AT / clean.
* **ResNet-32** (n=5, feature_dim 256, SCE, random 3x32x32 data, untrained, seeded):
  PGD call with --resnet-steps steps on a batch of --resnet-batch, fp32 / channels_last /
  bf16 / both.

The issue's targets: PGD-10 AT epoch / clean epoch <= 12 on LeNet-5 in fp32 (here:
with channels_last, the default on AVX-512 CPUs, against the channels_last clean epoch), and an AT
epoch <= 0.4x of fp32 eager with bf16 crafting.  bf16 is fast only on CPUs with native
bf16 (AVX-512 BF16 / AMX); the machine's flags are printed first.
"""

from __future__ import annotations

import functools

import tempfile
from collections.abc import Callable
from typing import Any

import _common as C
import torch

from robustloss import datasets
from robustloss.attacks import PGD
from robustloss.classifier import Classifier
from robustloss.device import apply_channels_last
from robustloss.training import AdversarialConfig, TrainConfig
from robustloss.training.trainer import build_classifier

#: variant name -> (channels_last, amp)
VARIANTS: dict[str, tuple[bool, str | None]] = {
    "fp32": (False, None), "channels_last": (True, None), "bf16": (False, "bf16"), "both": (True, "bf16")}


def cpu_flags() -> str:
    """The CPU model and the flags that decide these ratios (from /proc/cpuinfo), and torch's CPU kernel level."""
    model, flags = "?", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
    shown = ", ".join(f"{name} {'yes' if name in flags else 'no'}" for name in wanted)
    return f"{model}; {shown}; torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def frozen(run: Callable[..., Any], model: torch.nn.Module) -> Callable[..., Any]:
    """``run`` with ``model``'s parameters frozen (``requires_grad_(False)``) during the call, restored after."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        flags = [p.requires_grad for p in model.parameters()]
        model.requires_grad_(False)
        try:
            return run(*args, **kwargs)
        finally:
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)
    return wrapped


def pgd_calls(model: Classifier, x: torch.Tensor, y: torch.Tensor, steps: int, eps: float, step_size: float,
              with_frozen: bool) -> tuple[dict[str, Callable[[], Any]], dict[str, PGD]]:
    """One PGD call per variant; each variant attacks its own copy of ``model``."""
    fns: dict[str, Callable[[], Any]] = {}
    attacks: dict[str, PGD] = {}
    names = [*VARIANTS, *(["frozen"] if with_frozen else [])]
    for name in names:
        layout, amp = VARIANTS.get(name, (False, None))
        copy = build_like(model)
        apply_channels_last(copy, layout)
        attack = PGD(copy, eps, steps, step_size, final_iterate=True, seed=0)
        attack.amp = amp
        attacks[name] = attack
        run: Callable[..., Any] = frozen(attack.run, copy) if name == "frozen" else attack.run
        fns[name] = functools.partial(run, x, y)
    return fns, attacks


def build_like(model: Classifier) -> Classifier:
    """A copy of ``model`` (same weights, contiguous), in eval mode."""
    import copy

    out = copy.deepcopy(model)
    apply_channels_last(out, False)
    return out.eval()


def report(times: C.Times, names: list[str], label: str, unit: str = "call", per: int = 1) -> None:
    for name in names:
        if name != "fp32":
            C.ratio(times, name, "fp32", target=None, label=f"{label}: {name} / fp32", unit=unit, per=per)


def lenet_pgd(args: Any) -> None:
    model = C.train_sce_lenet()
    xt, yt = datasets.load("mnist", "test")
    x, y = xt[:128].contiguous(), yt[:128].contiguous()
    fns, attacks = pgd_calls(model, x, y, 10, 0.1, 0.01, with_frozen=True)
    print("PGD-10 call (eps 0.1, step 0.01, final iterate), briefly trained SCE LeNet-5, 128 MNIST test images")
    times = C.interleaved(fns, reps=args.pgd_reps)
    report(times, list(fns), "LeNet-5 PGD-10")
    for name, attack in attacks.items():
        res = attack.run(x, y)
        print(f"  robust accuracy {name}: {float((~res.success).float().mean()):.4f}")
    contiguous, cl = attacks["fp32"].model, attacks["channels_last"].model
    with torch.no_grad():
        diff = float((contiguous(x) - cl(x)).abs().max())
    print(f"  max |logits channels_last - contiguous| on the batch: {diff:.2e}")


def lenet_at(args: Any) -> None:
    x, y = datasets.load("mnist", "train")
    x, y = x[:args.at_images].contiguous(), y[:args.at_images].contiguous()
    adv = AdversarialConfig(method="pgd", steps=10, eps=0.3, step_size=0.01)
    fns: dict[str, Callable[[], None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (layout, amp) in VARIANTS.items():
            cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000, adversarial=adv, amp=amp)
            t = C.trainer(cfg, f"{tmp}/{name}", channels_last=layout)
            fns[f"at_{name}"] = C.epochs(t, x, y)
        cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000, adversarial=adv)
        t = C.trainer(cfg, f"{tmp}/frozen", channels_last=False)
        assert t.adversary is not None
        t.adversary.attack.craft = frozen(t.adversary.attack.craft, t.model)
        fns["at_frozen"] = C.epochs(t, x, y)
        for name, layout in (("clean_fp32", False), ("clean_channels_last", True)):
            t = C.trainer(TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=1000),
                               f"{tmp}/{name}", channels_last=layout)
            fns[name] = C.epochs(t, x, y)
        print(f"PGD-10 AT epoch (eps 0.3, step 0.01, targeted, SCE), LeNet-5, {args.at_images} MNIST images, "
              "batch 128")
        times = C.interleaved(fns, reps=args.at_reps)
    for name in ("at_channels_last", "at_bf16", "at_both", "at_frozen"):
        target = 0.4 if name in ("at_bf16", "at_both") else None
        C.ratio(times, name, "at_fp32", target=target, label=f"AT epoch {name[3:]} / fp32", unit="epoch")
    C.ratio(times, "clean_channels_last", "clean_fp32", target=None, label="clean epoch channels_last / fp32",
            unit="epoch")
    C.ratio(times, "at_fp32", "clean_fp32", target=12, label="AT / clean, fp32 contiguous", unit="epoch")
    C.ratio(times, "at_channels_last", "clean_channels_last", target=12, label="AT / clean, channels_last (the default on AVX-512)",
            unit="epoch")
    C.ratio(times, "at_both", "clean_channels_last", target=None, label="AT bf16+channels_last / clean channels_last",
            unit="epoch")


def resnet_pgd(args: Any) -> None:
    if args.resnet_reps == 0:
        return
    model = build_classifier(TrainConfig(dataset="cifar10", model="resnet", objective="sce",
                                         model_options={"n": 5, "feature_dim": 256})).eval()
    gen = torch.Generator().manual_seed(0)
    b = args.resnet_batch
    x, y = torch.rand(b, 3, 32, 32, generator=gen), torch.randint(0, 10, (b,), generator=gen)
    fns, _ = pgd_calls(model, x, y, args.resnet_steps, 8 / 255, 2 / 255, with_frozen=False)
    print(f"PGD-{args.resnet_steps} call, ResNet-32 (n=5, d=256, untrained), random 3x32x32, batch {b}")
    report(C.interleaved(fns, reps=args.resnet_reps), list(fns), f"ResNet-32 PGD-{args.resnet_steps}")


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--pgd-reps", type=int, default=7)
    p.add_argument("--at-images", type=int, default=640, help="images per AT / clean epoch (multiple of 128)")
    p.add_argument("--at-reps", type=int, default=3)
    p.add_argument("--resnet-steps", type=int, default=2)
    p.add_argument("--resnet-reps", type=int, default=3, help="0 skips ResNet-32")
    p.add_argument("--resnet-batch", type=int, default=32,
                   help="ResNet-32 batch (32, not 128: a bf16 step without native bf16 takes ~15 s at 128)")
    args = p.parse_args()
    C.setup(args)
    print(f"CPU: {cpu_flags()}")
    lenet_pgd(args)
    lenet_at(args)
    resnet_pgd(args)


if __name__ == "__main__":
    main()
