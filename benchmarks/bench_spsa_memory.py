"""Target 5: peak memory of SPSA with 8192 samples per step on LeNet-5 / MNIST, peak RSS < 4 GiB.

    .venv/bin/python benchmarks/bench_spsa_memory.py

Each ``chunk`` setting runs in a fresh process (this script with ``--chunk``): it
builds the (untrained, seeded) SCE LeNet-5, takes the first --points MNIST test
images the model classifies correctly (SPSA skips misclassified ones), runs one
forward of them, reads its RSS, resets the kernel's peak-RSS mark (``VmHWM``, via
``/proc/self/clear_refs``), runs ``SPSA(samples=8192, steps=--steps)`` and reads
``VmHWM`` again.  Memory does not depend on the weights, and the size of every
forward depends only on ``chunk`` (model evaluations per forward; default 512),
not on the number of points or steps.  ``chunk=8192`` (every sample of an example
in one forward, as an unchunked implementation would do) is shown for comparison.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import _common as C
import torch

from robustloss import datasets
from robustloss.attacks import SPSA
from robustloss.training import TrainConfig
from robustloss.training.trainer import build_classifier


def status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure(args) -> None:
    model = build_classifier(TrainConfig(dataset="mnist", model="lenet5", objective="sce")).eval()
    xt, yt = datasets.load("mnist", "test")
    with torch.no_grad():
        correct = (model(xt[:100]).argmax(1) == yt[:100]).nonzero().squeeze(1)[:args.points]
        x, y = xt[correct].clone(), yt[correct].clone()
        model(x)
    before = status_mib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")    # VmHWM := VmRSS
    except OSError:
        print("  (could not reset VmHWM: the peak includes the start-up)")
    start = time.perf_counter()
    SPSA(model, 0.3, steps=args.steps, samples=args.samples, chunk=args.chunk)(x, y)
    seconds = time.perf_counter() - start
    peak = status_mib("VmHWM")
    print(f"  samples={args.samples}, chunk={args.chunk}: peak RSS {peak:.0f} MiB ({before:.0f} MiB before the "
          f"attack, +{peak - before:.0f} MiB), {len(x)} points x {args.steps} steps in {seconds:.1f} s; "
          f"target < 4 GiB: {'PASS' if peak < 4096 else 'FAIL'}")


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--samples", type=int, default=8192)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--points", type=int, default=2)
    p.add_argument("--chunks", default="512,8192", help="comma-separated chunk settings, one process each")
    p.add_argument("--chunk", type=int, help="measure this one setting in this process")
    args = p.parse_args()
    if args.chunk is not None:
        if args.malloc_tune:
            C.malloc_tune()
        torch.set_num_threads(args.threads)
        measure(args)
        return
    C.setup(args)
    print(f"target 5: SPSA peak memory, {args.samples} samples per step, {args.points} points, {args.steps} steps")
    for chunk in args.chunks.split(","):
        cmd = [sys.executable, __file__, "--chunk", chunk, "--samples", str(args.samples), "--steps",
               str(args.steps), "--points", str(args.points), "--threads", str(args.threads)]
        subprocess.run(cmd + (["--malloc-tune"] if args.malloc_tune else []), check=True)


if __name__ == "__main__":
    main()
