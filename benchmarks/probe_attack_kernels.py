"""Diagnostic (not a target): why an attack step costs more than a training step on LeNet-5 / CPU.

Part A, one batch of 128 MNIST images, SCE LeNet-5, median CPU time per call:

* training step (forward, loss, backward w.r.t. the weights, SGD step) and
  attack step (forward, CE, ``autograd.grad`` w.r.t. the input);
* the input-gradient of the first convolution alone (1 -> 6 channels, 5x5,
  padding 2), with the minor page faults per call;
* each with torch's oneDNN (mkldnn) convolutions on (default) and off
  (``torch.backends.mkldnn.flags(enabled=False)``) - interleaved in one process -
  and with glibc's default malloc vs "tuned" malloc (environment
  ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``: freed
  buffers up to 32 MiB are kept and reused instead of being unmapped and
  page-faulted in again) - one fresh process per setting, the two kinds of process
  alternating ``--processes`` times each; the median over processes is reported.

Part B, whole PGD-10 adversarial-training epochs (``Trainer.train_epoch``, eps 0.3,
``--epoch-images`` images), interleaved in one process: ours as is, ours with
oneDNN switched off *only while crafting the adversarial examples* (a wrapper in
this script; the training step keeps oneDNN), and the clean epoch; once with the
default and once with the tuned malloc (one process each).

Part C: ResNet-32 (n=5, batch 128, random 3x32x32) attack and training steps with
oneDNN on and off, interleaved - whether switching oneDNN off is a general remedy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def kernels_child(args) -> dict:
    import resource

    import torch
    import torch.nn.functional as F

    from robustloss import datasets
    from robustloss.training.config import TrainConfig
    from robustloss.training.trainer import build_classifier, build_optimizer

    x, y = datasets.load("mnist", "val")
    cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce")
    model = build_classifier(cfg)
    opt, _ = build_optimizer(cfg, model)
    xb, yb = x[:128].contiguous(), y[:128].contiguous()
    conv1 = model.backbone.conv[0]
    go = torch.randn(128, 6, 28, 28, generator=torch.Generator().manual_seed(0))
    n = 10
    faults: dict[str, list[int]] = {}

    def train_step():
        loss = model.objective.loss(model.features(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def attack_step():
        xa = xb.detach().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xa), yb, reduction="none").sum(), xa)

    def conv1_input_grad():
        torch.ops.aten.convolution_backward(go, xb, conv1.weight, [6], [1, 1], [2, 2], [1, 1], False, [0, 0], 1,
                                            [True, False, False])

    def variant(fn, mkldnn: bool, name: str):
        def run():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            with torch.backends.mkldnn.flags(enabled=mkldnn):
                for _ in range(n):
                    fn()
            faults.setdefault(name, []).append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // n)
        return run

    fns = {}
    for kname, k in (("train_step", train_step), ("attack_step", attack_step), ("conv1_input_grad", conv1_input_grad)):
        for mk in (True, False):
            name = f"{kname}|{'on' if mk else 'off'}"
            fns[name] = variant(k, mk, name)
    times = C.interleaved(fns, reps=args.reps, warmup=1)
    return {name: {"cpu_ms": C.med(times["cpu"][name]) / n * 1e3,
                   "faults": sorted(faults[name])[len(faults[name]) // 2]} for name in fns}


def epochs_child(args) -> dict:
    import torch

    from robustloss import datasets
    from robustloss.training.config import AdversarialConfig, TrainConfig
    from robustloss.training.trainer import Trainer

    x, y = datasets.load("mnist", "train")
    xe, ye = x[:args.epoch_images].contiguous(), y[:args.epoch_images].contiguous()
    adv = AdversarialConfig(method="pgd", steps=10, eps=0.3, step_size=0.01)
    common = dict(dataset="mnist", model="lenet5", objective="sce", train_limit=args.epoch_images, epochs=1000)
    tmp = tempfile.TemporaryDirectory()
    trainers = {
        "at": Trainer(TrainConfig(**common, adversarial=adv), Path(tmp.name) / "a", device="cpu", progress=False,
                      log=lambda _m: None),
        "at_attack_mkldnn_off": Trainer(TrainConfig(**common, adversarial=adv), Path(tmp.name) / "b", device="cpu",
                                        progress=False, log=lambda _m: None),
        "clean": Trainer(TrainConfig(**common), Path(tmp.name) / "c", device="cpu", progress=False,
                         log=lambda _m: None),
    }
    adversary = trainers["at_attack_mkldnn_off"].adversary

    def call_without_mkldnn(xs, ys):
        with torch.backends.mkldnn.flags(enabled=False):
            return adversary(xs, ys)

    trainers["at_attack_mkldnn_off"].adversary = _Wrapped(adversary, call_without_mkldnn)
    epochs = {k: 0 for k in trainers}

    def epoch(name):
        def fn():
            trainers[name].train_epoch(epochs[name], xe, ye, augment=False)
            epochs[name] += 1
        return fn

    et = C.interleaved({k: epoch(k) for k in trainers}, reps=args.epoch_reps, warmup=1)
    tmp.cleanup()
    return {k: C.med(v) for k, v in et["cpu"].items()}


def resnet_kernels(args) -> dict:
    """ResNet-32 attack and training steps with oneDNN on / off (this process, default malloc, interleaved)."""
    import torch

    from robustloss.training.config import TrainConfig
    from robustloss.training.trainer import build_classifier, build_optimizer

    cfg = TrainConfig(dataset="cifar10", model="resnet", model_options={"n": 5, "feature_dim": 256})
    model = build_classifier(cfg)
    opt, _ = build_optimizer(cfg, model)
    g = torch.Generator().manual_seed(0)
    xb, yb = torch.rand(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    train_step, attack_step = C.kernel_steps(model, opt, xb, yb)

    def variant(fn, mk):
        def run():
            with torch.backends.mkldnn.flags(enabled=mk):
                fn()
        return run

    fns = {f"{k}|{'on' if mk else 'off'}": variant(f, mk) for k, f in (("train_step", train_step),
                                                                        ("attack_step", attack_step))
           for mk in (True, False)}
    times = C.interleaved(fns, reps=args.reps, warmup=1)
    res = {name: C.med(times["cpu"][name]) * 1e3 for name in fns}
    print(f"[probe] ResNet-32 (n=5), batch 128, median CPU ms per call, {args.reps} interleaved repetitions:")
    for name, ms in res.items():
        kname, mk = name.split("|")
        print(f"  {kname:<17} mkldnn={mk:<4} {ms:8.1f} ms")
    return res


def run_child(kind: str, tuned: bool, args) -> dict:
    env = dict(os.environ)
    for key in MALLOC_ENV:
        env.pop(key, None)
    if tuned:
        env.update(MALLOC_ENV)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--threads", str(args.threads),
           "--reps", str(args.reps), "--epoch-images", str(args.epoch_images), "--epoch-reps", str(args.epoch_reps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions inside each kernel process")
    p.add_argument("--processes", type=int, default=4, help="kernel processes per malloc setting")
    p.add_argument("--epoch-images", type=int, default=2560)
    p.add_argument("--epoch-reps", type=int, default=3)
    p.add_argument("--skip-epochs", action="store_true")
    p.add_argument("--skip-resnet", action="store_true")
    p.add_argument("--child", choices=("kernels", "epochs"), help=argparse_suppress())
    args = p.parse_args()
    C.setup(args)
    import warnings

    warnings.filterwarnings("ignore", message=".*TF32.*")
    if args.child:
        print(json.dumps(kernels_child(args) if args.child == "kernels" else epochs_child(args)))
        return
    t0 = time.perf_counter()
    cond = C.conditions()
    print(f"[probe] LeNet-5 kernels, batch 128: median CPU ms per call ({args.processes} processes per malloc "
          f"setting, alternating; {args.reps} interleaved repetitions of 10 calls in each)")
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.processes):
        for tuned in (False, True):
            runs[tuned].append(run_child("kernels", tuned, args))
    kernels = []
    for tuned in (False, True):
        for name in runs[tuned][0]:
            kname, mk = name.split("|")
            ms = C.med([r[name]["cpu_ms"] for r in runs[tuned]])
            flt = int(C.med([r[name]["faults"] for r in runs[tuned]]))
            kernels.append({"kernel": kname, "mkldnn": mk, "malloc": "tuned" if tuned else "default",
                            "cpu_ms": ms, "minor_faults_per_call": flt})
    for k in sorted(kernels, key=lambda r: (r["kernel"], r["mkldnn"] == "off", r["malloc"])):
        print(f"  {k['kernel']:<17} mkldnn={k['mkldnn']:<4} malloc={k['malloc']:<8} {k['cpu_ms']:7.2f} ms "
              f"{k['minor_faults_per_call']:6d} page faults/call")
    resnet = {} if args.skip_resnet else resnet_kernels(args)
    epochs_res = {}
    if not args.skip_epochs:
        print(f"[probe] PGD-10 AT epochs on {args.epoch_images} images, {args.epoch_reps} interleaved repetitions, "
              f"median CPU s")
        for tuned in (False, True):
            med = run_child("epochs", tuned, args)
            label = "tuned" if tuned else "default"
            epochs_res[label] = {"median_cpu_s": med, "at_over_clean": med["at"] / med["clean"],
                                 "at_attack_mkldnn_off_over_clean": med["at_attack_mkldnn_off"] / med["clean"],
                                 "at_attack_mkldnn_off_over_at": med["at_attack_mkldnn_off"] / med["at"]}
            e = epochs_res[label]
            print(f"  malloc {label}: " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items()) +
                  f"; AT / clean = {e['at_over_clean']:.2f}; AT with mkldnn off in the attack / clean = "
                  f"{e['at_attack_mkldnn_off_over_clean']:.2f} ({e['at_attack_mkldnn_off_over_at']:.3f} x AT as is)")
    result = {"id": "probe_attack_kernels", "title": "Diagnostic: attack vs training step kernels on LeNet-5",
              "kernels": kernels, "resnet": resnet, "epochs": epochs_res, "malloc_env": MALLOC_ENV}
    C.finish(result, args.json, cond, t0)


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


class _Wrapped:
    """Calls ``fn`` instead of the adversary; forwards everything else (``reseed``, ``attack``...)."""

    def __init__(self, inner, fn) -> None:
        self._inner, self._fn = inner, fn

    def __call__(self, xs, ys):
        return self._fn(xs, ys)

    def __getattr__(self, name):
        return getattr(self._inner, name)


if __name__ == "__main__":
    main()
