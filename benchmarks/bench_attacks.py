"""Target 3: our PGD / MIM / APGD against a bare loop of the same gradient steps, throughput >= 0.95.

    .venv/bin/python benchmarks/bench_attacks.py                 # 10 and 40 steps, 3 repetitions
    .venv/bin/python benchmarks/bench_attacks.py --reps 31       # steadier

Model: an SCE LeNet-5 trained briefly here (3 epochs, lr 0.05, 10k MNIST images);
inputs: the first --batch MNIST test images; untargeted L-inf, eps 0.1, CE loss,
one restart.  Ours: ``attack(x, y)`` of the package's attack classes.  Bare: k
steps of PGD written plainly (random start; forward, CE, ``autograd.grad``, sign
step, projection) - the k gradient evaluations every k-step attack needs and
nothing else; MIM's momentum and APGD's step-size schedule are elementwise work
on 128 x 784 numbers and count as our overhead.  In evaluation mode (default) a
fooled example leaves the batch, so ours forwards fewer images than the bare loop
on a model that gets fooled; ``final_iterate=True`` (the adversarial-training
mode) runs every example every step: it measures the pure overhead.  Both PGD
sides draw the same random start, so their iterates must agree on the points
neither fooled (printed as a check).
"""

from __future__ import annotations

from functools import partial

import _common as C
import torch

from robustloss import datasets
from robustloss.attacks import APGD, MIM, PGD


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", default="10,40", help="comma-separated step counts")
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--step-size", type=float, default=0.01, help="PGD / MIM step size")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    C.setup(args)
    model = C.train_sce_lenet()
    xt, yt = datasets.load("mnist", "test")
    x, y = xt[:args.batch].contiguous(), yt[:args.batch].contiguous()
    counter = C.ForwardCounter(model.backbone)
    eps, ss = args.eps, args.step_size
    with torch.no_grad():
        print(f"target 3: attacks vs a bare PGD loop; clean accuracy on the batch "
              f"{float((model(x).argmax(1) == y).float().mean()):.3f}, batch {args.batch}, eps {eps}")
    for k in [int(s) for s in args.steps.split(",")]:
        def bare() -> torch.Tensor:     # the same random start as our attacks (a generator seeded 0)
            return C.bare_pgd(model, x, y, eps, ss, k, torch.Generator().manual_seed(0))

        for final in (False, True):
            attacks = {"PGD": PGD(model, eps, k, ss, loss="ce"), "MIM": MIM(model, eps, k, ss, loss="ce"),
                       "APGD": APGD(model, eps, k, loss="ce")}
            for name, attack in attacks.items():
                attack.final_iterate = final          # an option of PGD only; MIM and APGD honour the switch
                counter.reset()
                ours = attack.run(x, y)
                work = f"{counter.calls} forwards, {counter.rows} images"
                counter.reset()
                adv_bare = bare()
                work += f" (bare: {counter.calls}, {counter.rows})"
                label = f"{name}-{k}" + (" final_iterate" if final else "")
                # the untimed runs above were the warm-up
                times = C.interleaved({"ours": partial(attack, x, y), "bare": bare}, reps=args.reps, warmup=0)
                C.ratio(times, "ours", "bare", target=0.95, throughput=True, label=label)
                with torch.no_grad():
                    robust_bare = model(adv_bare).argmax(1) == y
                check = ""
                if name == "PGD":
                    both = ~ours.success & robust_bare
                    diff = (ours.adversarial[both] - adv_bare[both]).abs().max() if bool(both.any()) else 0.0
                    check = f"; survivors of both {int(both.sum())}, max |ours - bare| {float(diff):.1e}"
                print(f"    {work}; robust accuracy ours {float((~ours.success).float().mean()):.3f}, "
                      f"bare {float(robust_bare.float().mean()):.3f}{check}")


if __name__ == "__main__":
    main()
