"""Target 4: survivors-only worst case, ``evaluate(worst_case=True)`` / ``worst_case=False`` time <= 0.5 at eps 0.3.

    .venv/bin/python benchmarks/bench_worst_case.py                      # 500 points, eps 0.3 and 0.1
    .venv/bin/python benchmarks/bench_worst_case.py --points 1000 --reps 5

Model: an SCE LeNet-5 trained briefly here (3 epochs, lr 0.05, 10k MNIST images);
points: the first --points MNIST test images.  Suite (L-inf, untargeted): FGSM,
PGD-10 and PGD-40 (step 0.01, random start), MIM-10 (step eps/10), APGD-CE-10.
``worst_case=False`` runs every attack on every clean-correct point;
``worst_case=True`` each attack only on the points that survived the previous
ones.  The target applies at eps 0.3 (the MNIST budget); eps 0.1, where points
survive, is informational.  Also printed: both modes' worst-case accuracy and
on how many points they disagree.
"""

from __future__ import annotations

import _common as C

from robustloss import datasets
from robustloss.evaluation import AttackSpec, EvalResult, evaluate


def suite(eps: float) -> list[AttackSpec]:
    return [AttackSpec("FGSM", "fgsm", {"eps": eps}),
            AttackSpec("PGD-10", "pgd", {"eps": eps, "steps": 10, "step_size": 0.01}),
            AttackSpec("PGD-40", "pgd", {"eps": eps, "steps": 40, "step_size": 0.01}),
            AttackSpec("MIM-10", "mim", {"eps": eps, "steps": 10}),
            AttackSpec("APGD-CE-10", "apgd", {"eps": eps, "steps": 10, "loss": "ce"})]


def main() -> None:
    p = C.parser(__doc__)
    p.add_argument("--points", type=int, default=500)
    p.add_argument("--eps", default="0.3,0.1", help="comma-separated eps values")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    C.setup(args)
    model = C.train_sce_lenet()
    xt, yt = datasets.load("mnist", "test")
    x, y = xt[:args.points], yt[:args.points]
    print(f"target 4: evaluate(worst_case=True) vs (worst_case=False), {args.points} points, 5 attacks")
    for eps in [float(e) for e in args.eps.split(",")]:
        results: dict[bool, EvalResult] = {}

        def run(worst: bool) -> None:
            results[worst] = evaluate(model, x, y, suite(eps), seed=0, worst_case=worst)

        times = C.interleaved({"worst": lambda: run(True), "all": lambda: run(False)}, reps=args.reps, warmup=0)
        C.ratio(times, "worst", "all", target=0.5 if eps == 0.3 else None, label=f"eps {eps}")
        w, a = results[True], results[False]
        print(f"    clean accuracy {w.clean_accuracy:.4f}; worst-case accuracy {float(w.worst_case.float().mean()):.4f}"
              f" (worst_case=True) vs {float(a.worst_case.float().mean()):.4f} (False), "
              f"{int((w.worst_case != a.worst_case).sum())} points differ; points attacked (True / False): "
              + ", ".join(f"{rw.spec.label} {rw.attacked}/{ra.attacked}" for rw, ra in zip(w.attacks, a.attacks)))


if __name__ == "__main__":
    main()
