"""Target 5: peak memory of SPSA with 8192 samples per step on LeNet-5 / MNIST.

The parent process trains an SCE LeNet-5 briefly (1 epoch, lr 0.05, on 5k MNIST
images), saves its weights to a temporary file, and picks ``--points`` test images
the model classifies correctly (SPSA skips points that are already misclassified).
Each configuration then runs in a *fresh* subprocess: it imports torch, loads the
weights and the points, runs one forward, records its RSS (``VmRSS``), resets the
kernel's peak-RSS mark (``VmHWM``, via ``/proc/self/clear_refs``), runs
``SPSA(samples=8192, steps=--steps)`` and reads ``VmHWM`` again.  Reported: the
absolute peak RSS of the attack process (max of the pre-attack and attack peaks) and
the attack's increase over the pre-attack RSS (torch + model + data loaded).
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is recorded too, but it is *not*
used: Linux carries the high-water mark of the forked parent (here ~0.5 GiB,
with MNIST and the training run in memory) across ``exec`` into the child, so it
overstates the child's own baseline.  Configurations: the default ``chunk``
(512 model evaluations per forward) and ``chunk=8192`` (all samples of an example
in one forward - what an unchunked implementation would do), for comparison.
Target: peak RSS < 4 GiB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

TARGET_GIB = 4.0


def child(args) -> None:
    """Runs in the fresh subprocess; prints one JSON line."""
    import resource

    C.setup(args)
    import torch

    from robustloss.attacks import SPSA
    from robustloss.training.config import TrainConfig
    from robustloss.training.trainer import build_classifier

    def status_mib(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def maxrss_mib() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB

    model = build_classifier(TrainConfig(dataset="mnist", model="lenet5", objective="sce"))
    model.load_state_dict(torch.load(args.weights, weights_only=True))
    model.eval()
    data = torch.load(args.points_file, weights_only=True)
    x, y = data["x"], data["y"]
    with torch.no_grad():                       # touch every code path once before the baseline
        model(x)
    base_rss, base_hwm, base_maxrss = status_mib("VmRSS"), status_mib("VmHWM"), maxrss_mib()
    try:  # reset the peak-RSS mark (VmHWM) so that it measures the attack alone
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    attack = SPSA(model, eps=args.eps, steps=args.steps, samples=args.samples, chunk=args.chunk, seed=0)
    t0 = time.perf_counter()
    x_adv = attack(x, y)
    elapsed = time.perf_counter() - t0
    peak_hwm, peak_maxrss = status_mib("VmHWM"), maxrss_mib()
    with torch.no_grad():
        robust = float((model(x_adv).argmax(1) == y).float().mean())
    print(json.dumps({"baseline_mib": base_rss, "baseline_hwm_mib": base_hwm, "hwm_reset": reset,
                      "peak_mib": max(peak_hwm, base_hwm), "delta_mib": peak_hwm - base_rss,
                      "ru_maxrss_before_mib": base_maxrss, "ru_maxrss_after_mib": peak_maxrss,
                      "attack_s": elapsed, "robust_acc": robust}))


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=8192)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--points", type=int, default=2)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--chunks", default="512,8192", help="comma-separated chunk sizes (512 = SPSA's default)")
    p.add_argument("--child", action="store_true", help=argparse_suppress())
    p.add_argument("--chunk", type=int, default=512, help=argparse_suppress())
    p.add_argument("--weights", help=argparse_suppress())
    p.add_argument("--points-file", help=argparse_suppress())
    args = p.parse_args()
    if args.child:
        child(args)
        return
    C.setup(args)
    t0 = time.perf_counter()
    cond = C.conditions()

    import torch

    from robustloss import datasets

    model = C.train_sce_lenet(n_images=5_000, epochs=1)
    xt, yt = datasets.load("mnist", "test")
    with torch.no_grad():
        correct = (model(xt[:200]).argmax(1) == yt[:200]).nonzero().squeeze(1)[:args.points]
    print(f"[5] SPSA peak memory: samples={args.samples}, steps={args.steps}, {len(correct)} correctly classified "
          f"MNIST test points, eps {args.eps}, LeNet-5 (SCE, 1 epoch on 5k images)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        weights, points = Path(tmp) / "w.pt", Path(tmp) / "points.pt"
        torch.save(model.state_dict(), weights)
        torch.save({"x": xt[correct].clone(), "y": yt[correct].clone()}, points)
        for chunk in [int(c) for c in args.chunks.split(",") if c.strip()]:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--chunk", str(chunk),
                   "--samples", str(args.samples), "--steps", str(args.steps), "--eps", str(args.eps),
                   "--threads", str(args.threads), "--weights", str(weights), "--points-file", str(points)]
            if args.malloc_tune:
                cmd.append("--malloc-tune")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            peak_gib = res["peak_mib"] / 1024
            row = {"case": f"samples={args.samples}, chunk={chunk}" + (" (default)" if chunk == 512 else ""),
                   "chunk": chunk, "samples": args.samples, "peak_rss_mib": res["peak_mib"],
                   "baseline_rss_mib": res["baseline_mib"], "delta_rss_mib": res["delta_mib"],
                   "ru_maxrss_before_mib": res["ru_maxrss_before_mib"],
                   "ru_maxrss_after_mib": res["ru_maxrss_after_mib"], "hwm_reset": res["hwm_reset"],
                   "attack_s": res["attack_s"], "s_per_point_step": res["attack_s"] / (len(correct) * args.steps),
                   "robust_acc": res["robust_acc"], "target": f"< {TARGET_GIB:g} GiB", "pass": peak_gib < TARGET_GIB}
            rows.append(row)
            print(f"  {row['case']}: peak RSS {res['peak_mib']:.0f} MiB (baseline {res['baseline_mib']:.0f} MiB, "
                  f"+{res['delta_mib']:.0f} MiB for the attack), {res['attack_s']:.1f} s "
                  f"(<= {row['s_per_point_step']:.2f} s per point and step), target < {TARGET_GIB:g} GiB: "
                  f"{'PASS' if row['pass'] else 'FAIL'}")
    default_rows = [r for r in rows if r["chunk"] == 512] or rows
    result = {"id": "spsa_memory", "title": f"SPSA peak memory at {args.samples} samples per step",
              "target": f"< {TARGET_GIB:g} GiB", "rows": rows, "pass": all(r["pass"] for r in default_rows),
              "setup": {"points": len(correct), "steps": args.steps, "eps": args.eps}}
    C.finish(result, args.json, cond, t0)


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
