"""Target 3: our PGD / MIM / APGD vs bare loops of the same steps (same model, batch, steps).

Model: an SCE LeNet-5 trained briefly in the benchmark (3 epochs, lr 0.05, on 10k
MNIST images, ``Trainer.train_epoch``), eval mode; inputs: the first ``--batch`` MNIST
test images; untargeted L-inf attacks with restarts=1 and the CE loss (the
adaptive loss of SCE).  The bare loops (written here, per step: requires_grad,
forward, CE, ``autograd.grad``, step, clamp/project) do exactly the gradient
evaluations ours do and nothing else:

* PGD-k: random start, k x (forward + backward), sign step, projection.  Ours
  (evaluation mode, the default) keeps every example's first fooling iterate and
  drops fooled examples from the batch - so on a model that gets fooled it does
  *less* work than the bare loop (``images forwarded`` in the output) - plus one
  forward to check the last iterate and an input validation.  The
  ``final_iterate=True`` rows (the adversarial-training mode: no example leaves
  the batch) do exactly the bare loop's work plus that check: they measure the
  pure per-step overhead.  They also time, interleaved as a third side, the same
  attack without the final check (a subclass defined here: a proposed change).
* MIM-k: no random start, k x (forward + backward), L1-normalised momentum
  (same two modes as PGD).
* APGD-k: Croce & Hein's schedule, ``k`` gradient evaluations plus one forward of
  the last iterate (ours does the same), per-example step size and best point,
  with ``torch.where`` updates.  Ours also tracks fooling iterates and stops
  when every example of the batch is fooled (which does not happen at the
  default eps 0.1; see ``forwards`` in the output).

Both sides of PGD use the same random start, so their final iterates are
compared on the points neither fooled (a correctness check of the bare loop).
Target: throughput ratio ours / bare >= 0.95 for each attack.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

TARGET = 0.95


# ----------------------------------------------------------------------------- bare loops
def _ce_grad(model, xa, y):
    import torch
    import torch.nn.functional as F

    xa = xa.detach().requires_grad_(True)
    logits = model(xa)
    loss = F.cross_entropy(logits, y, reduction="none")
    (g,) = torch.autograd.grad(loss.sum(), xa)
    return loss.detach(), g


def bare_pgd(model, x, y, eps, step_size, steps, seed):
    import torch

    gen = torch.Generator().manual_seed(seed)
    xa = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        _, g = _ce_grad(model, xa, y)
        xa = (x + (xa + step_size * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return xa


def bare_mim(model, x, y, eps, step_size, steps, decay=1.0):
    xa = x.clone()
    mom = x.new_zeros(x.shape)
    for _ in range(steps):
        _, g = _ce_grad(model, xa, y)
        mom = decay * mom + g / g.abs().flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        xa = (x + (xa + step_size * mom.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return xa


def bare_apgd(model, x, y, eps, steps, seed, rho=0.75, alpha=0.75):
    import torch
    import torch.nn.functional as F

    # checkpoints w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    checks = {math.ceil(q * steps) for q in p[1:]}
    v = (-1, 1, 1, 1)

    def proj(t):
        return (x + (t - x).clamp(-eps, eps)).clamp(0, 1)

    gen = torch.Generator().manual_seed(seed)
    x_cur = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0, 1)
    loss_cur, g = _ce_grad(model, x_cur, y)
    x_best, loss_best, g_best = x_cur.clone(), loss_cur.clone(), g.clone()
    x_prev = x_cur
    eta = torch.full((x.shape[0],), 2 * eps)
    last_check, eta_then, best_then = 0, eta.clone(), loss_best.clone()
    inc = torch.zeros(x.shape[0])
    for k in range(steps):
        z = proj(x_cur + eta.view(v) * g.sign())
        x_new = z if k == 0 else proj(x_cur + alpha * (z - x_cur) + (1 - alpha) * (x_cur - x_prev))
        if k == steps - 1:
            with torch.no_grad():
                loss_new = F.cross_entropy(model(x_new), y, reduction="none")
            g_new = g
        else:
            loss_new, g_new = _ce_grad(model, x_new, y)
        inc += (loss_new > loss_cur).float()
        better = loss_new > loss_best
        x_best = torch.where(better.view(v), x_new, x_best)
        g_best = torch.where(better.view(v), g_new, g_best)
        loss_best = torch.where(better, loss_new, loss_best)
        x_prev, x_cur, loss_cur, g = x_cur, x_new, loss_new, g_new
        if k + 1 in checks and k < steps - 1:
            reduce = (inc < rho * (k + 1 - last_check)) | ((eta_then == eta) & (best_then == loss_best))
            eta = torch.where(reduce, eta / 2, eta)
            rv = reduce.view(v)
            x_cur = torch.where(rv, x_best, x_cur)
            x_prev = torch.where(rv, x_best, x_prev)
            g = torch.where(rv, g_best, g)
            loss_cur = torch.where(reduce, loss_best, loss_cur)
            last_check, eta_then, best_then = k + 1, eta.clone(), loss_best.clone()
            inc.zero_()
    return x_best




# ----------------------------------------------------------------------------- benchmark
def bench_one(model, x, y, name, k, attack, bare, counter, reps, variant: str = "", no_check=None) -> dict:
    import torch

    # forward passes (and images forwarded) per call and attack strength of each side (outside the timing)
    attack.generator.manual_seed(0)
    counter.reset()
    adv_ours = attack(x, y)
    fw_ours, rows_ours = counter.calls, counter.rows
    counter.reset()
    adv_bare = bare()
    fw_bare, rows_bare = counter.calls, counter.rows
    with torch.no_grad():
        acc_ours = float((model(adv_ours).argmax(1) == y).float().mean())
        acc_bare = float((model(adv_bare).argmax(1) == y).float().mean())
    extra = {"attack": name, "steps": k, "variant": variant, "forwards_ours": fw_ours, "forwards_bare": fw_bare,
             "images_forwarded_ours": rows_ours, "images_forwarded_bare": rows_bare,
             "robust_acc_ours": acc_ours, "robust_acc_bare": acc_bare}
    if name == "pgd":
        with torch.no_grad():
            both = (model(adv_ours).argmax(1) == y) & (model(adv_bare).argmax(1) == y)
        diff = (adv_ours[both] - adv_bare[both]).abs().flatten(1).amax(1) if bool(both.any()) else torch.zeros(0)
        extra["survivors_compared"] = int(both.sum())
        extra["survivors_max_abs_diff"] = float(diff.max()) if diff.numel() else 0.0

    def ours_fn():
        attack.generator.manual_seed(0)
        attack(x, y)

    sides = {"ours": ours_fn, "bare": bare}
    if no_check is not None:
        no_check.generator.manual_seed(0)
        # same random start, every step on every example, last iterate: must equal the bare loop's result
        extra["no_final_check_equals_bare"] = bool((no_check(x, y) == adv_bare).all())

        def no_check_fn():
            no_check.generator.manual_seed(0)
            no_check(x, y)
        sides["ours_no_final_check"] = no_check_fn
    times = C.interleaved(sides, reps=reps, warmup=1)
    if no_check is not None:
        nc = C.ratio_row("", times, "ours_no_final_check", "bare", target=TARGET, higher_is_better=True)
        extra["no_final_check_over_bare"] = nc["ratio"]
        extra["no_final_check_pairs"] = [nc["paired_ratio_median"], *nc["paired_ratio_range"]]
        extra["median_cpu_no_final_check_ms"] = nc["median_cpu"]["ours_no_final_check"]
    row = C.ratio_row(f"{name.upper()}-{k}" + (f" ({variant})" if variant else ""), times, "ours", "bare",
                      target=TARGET, higher_is_better=True, **extra)
    C.print_row(row)
    print(f"    forwards per call: ours {fw_ours} ({rows_ours} images), bare {fw_bare} ({rows_bare} images); "
          f"robust acc on the batch: ours {acc_ours:.3f}, "
          f"bare {acc_bare:.3f}" + (f"; PGD survivors of both: {extra['survivors_compared']}, max |x_ours - x_bare| "
                                    f"= {extra['survivors_max_abs_diff']:.2e}" if name == "pgd" else ""))
    if no_check is not None:
        print(f"    without the final check (proposed change): throughput vs bare "
              f"{extra['no_final_check_over_bare']:.3f} "
              f"(per-rep pairs median {extra['no_final_check_pairs'][0]:.3f}); its result equals the bare loop's: "
              f"{extra['no_final_check_equals_bare']}")
    return row


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", default="10,40", help="comma-separated step counts, one row per attack each")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--step-size", type=float, default=0.01, help="PGD / MIM step size")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--untrained", action="store_true", help="attack the untrained model instead")
    p.add_argument("--attacks", default="pgd,mim,apgd")
    p.add_argument("--skip-final-iterate", action="store_true",
                   help="skip the PGD / MIM rows with final_iterate=True (same work on both sides)")
    args = p.parse_args()
    C.setup(args)
    t0 = time.perf_counter()
    cond = C.conditions()

    import torch

    from robustloss import datasets
    from robustloss.attacks import APGD, MIM, PGD

    if args.untrained:
        from robustloss.training.config import TrainConfig
        from robustloss.training.trainer import build_classifier

        model = build_classifier(TrainConfig(dataset="mnist", model="lenet5", objective="sce")).eval()
        model_desc = "untrained SCE LeNet-5"
    else:
        model = C.train_sce_lenet(n_images=10_000, epochs=3)
        model_desc = "SCE LeNet-5 trained 3 epochs (lr 0.05) on 10k MNIST images"
    xt, yt = datasets.load("mnist", "test")
    x, y = xt[:args.batch].contiguous(), yt[:args.batch].contiguous()
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())
    eps, ss = args.eps, args.step_size
    steps_list = [int(v) for v in args.steps.split(",") if v.strip()]
    counter = C.ForwardCounter(model.backbone)
    print(f"[3] attacks vs bare loops: {model_desc} (clean acc on the batch {clean_acc:.3f}), batch {args.batch}, "
          f"{'/'.join(map(str, steps_list))} steps, eps {eps}, L-inf, restarts=1")
    rows = []
    for k in steps_list:
        ours_attacks = {
            "pgd": PGD(model, eps, k, ss, restarts=1, random_start=True, loss="ce", seed=0),
            "mim": MIM(model, eps, k, ss, restarts=1, loss="ce", seed=0),
            "apgd": APGD(model, eps, k, restarts=1, loss="ce", seed=0),
        }
        bare_fns = {
            "pgd": lambda k=k: bare_pgd(model, x, y, eps, ss, k, seed=0),
            "mim": lambda k=k: bare_mim(model, x, y, eps, ss, k),
            "apgd": lambda k=k: bare_apgd(model, x, y, eps, k, seed=0),
        }
        for name in [a.strip() for a in args.attacks.split(",") if a.strip()]:
            rows.append(bench_one(model, x, y, name, k, ours_attacks[name], bare_fns[name], counter, args.reps))
            if name in ("pgd", "mim") and not args.skip_final_iterate:
                # final_iterate=True: no example leaves the batch, so both sides do exactly the same work
                cls = {"pgd": PGD, "mim": MIM}[name]
                kwargs = {"restarts": 1, "loss": "ce", "seed": 0}
                attack = cls(model, eps, k, ss, **kwargs)
                attack.final_iterate = True
                no_check = C.without_final_check(cls)(model, eps, k, ss, **kwargs)
                no_check.final_iterate = True
                rows.append(bench_one(model, x, y, name, k, attack, bare_fns[name], counter, args.reps,
                                      variant="final_iterate", no_check=no_check))
    counter.remove()
    result = {"id": "attacks", "title": "Our PGD / MIM / APGD vs bare loops (throughput)",
              "target": f"≥ {TARGET}", "rows": rows, "pass": all(r["pass"] for r in rows),
              "setup": {"model": model_desc, "clean_acc_batch": clean_acc, "batch": args.batch, "steps": steps_list,
                        "eps": eps, "step_size": ss}}
    C.finish(result, args.json, cond, t0)


if __name__ == "__main__":
    main()
