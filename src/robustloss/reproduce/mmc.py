"""Recipes of the MMC paper: ``mmc-table1`` (M1 + M11) and ``mmc-centers`` (M12).

``mmc-table1`` scales (IDs and numbers: ``seed-experiments.md``):

* ``paper``: CIFAR-10, ResNet-32 (ResNet-v2, n = 5, 256-d features), momentum SGD,
  lr 0.01, 200 epochs, x0.1 at 100 and 150 (MMC paper l.174); AT: 10-step PGD,
  eps 8/255, step 2/255 (l.176, l.205); PGD 10/50 steps at eps 8/255 and 16/255,
  step 2/255 (l.205); all 10,000 test images.
* ``cpu``: MNIST, LeNet-5.  The eps grid keeps the paper's ratios: the paper
  attacks at eps 8/255 and 16/255 with step 2/255, i.e. eps : eps : step =
  4 : 8 : 1; on MNIST that is eps 0.1 and 0.2 with step 0.025 (0.1 is the
  smallest eps of the PC paper's MNIST table, 0.2 its middle one; the MMC
  paper's own MNIST setting, eps 0.3 step 0.01, Fig. 3(b), is on the
  robustness curve).  AT uses the paper's 10 PGD steps at the first eps with
  the same step.  Epochs: measured on this 2-core machine with one thread,
  a LeNet-5 epoch takes ~23 s and a PGD-10 AT epoch ~280 s; 10 standard and 3
  AT epochs keep the recipe within the ~2 h budget (the paper trains 40).
* ``smoke``: 256 MNIST training images, 1 epoch, 40 test points, a reduced ensemble.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from robustloss import datasets
from robustloss.centers import mm_centers
from robustloss.evaluation.report import markdown_table
from robustloss.evaluation.suite import AttackSpec
from robustloss.reproduce.framework import (Claim, Context, Outcome, Recipe, label_axes, mnist_config, pct, pgd_at,
                                            pyplot, robustness_panels)
from robustloss.reproduce.papers.mmc_paper import MMC_PAPER, T1_ROWS
from robustloss.training.config import TrainConfig

# ------------------------------------------------------------------------------------------ mmc-table1
#: the paper's objective and options for each row of Table 1; ``None``: no AT, else targeted AT or not
T1_MODELS: dict[str, tuple[str, dict[str, Any], bool | None]] = {
    "SCE": ("sce", {}, None), "Center loss": ("center", {}, None), "MMLDA": ("mmlda", {}, None),
    "L-GM": ("lgm", {}, None), "MMC-10": ("mmc", {"c_mm": 10.0}, None),
    "AT10 tar (SCE)": ("sce", {}, True), "AT10 tar (MMC-10)": ("mmc", {"c_mm": 10.0}, True),
    "AT10 un (SCE)": ("sce", {}, False), "AT10 un (MMC-10)": ("mmc", {"c_mm": 10.0}, False),
}
assert tuple(T1_MODELS) == T1_ROWS


@dataclass(frozen=True)
class T1Scale:
    """Everything ``mmc-table1`` does at one scale."""

    eps: tuple[float, float]
    eps_names: tuple[str, str]        # the paper's eps each of ours stands for, e.g. ("8/255", "16/255")
    step: float
    curve_eps: tuple[float, ...]
    n: int
    config: Callable[[str, dict[str, Any], bool | None], TrainConfig]
    apgd_steps: int = 100
    mt_steps: int = 50
    mt_k: int = 9
    margin_restarts: int = 3
    convergence_steps: tuple[int, ...] = (100, 200)
    diag: tuple[tuple[str, Any], ...] = ()
    diag_n: int = 200
    #: our step counts for the paper's PGD10 and PGD50 columns (fewer only at smoke scale)
    pgd_steps: tuple[int, int] = (10, 50)
    models: tuple[str, ...] = T1_ROWS


def _cifar_config(objective: str, options: dict[str, Any], at: bool | None) -> TrainConfig:
    # the MMC paper l.174: ResNet-32, momentum SGD, lr 0.01, 200 epochs, x0.1 at 100 and 150; batch 50 is the
    # reproducibility report's (the paper states none)
    return TrainConfig(dataset="cifar10", model="resnet", model_options={"n": 5, "feature_dim": 256},
                       objective=objective, objective_options=dict(options), epochs=200, batch_size=50, lr=0.01,
                       momentum=0.9, lr_milestones=[100, 150], seed=0,
                       adversarial=None if at is None else pgd_at(8 / 255, 2 / 255, at))


def _synthetic_config(objective: str, options: dict[str, Any], at: bool | None) -> TrainConfig:
    # smoke scale: the 16x16 synthetic set (2,000 training images), 1 epoch
    return replace(mnist_config(1, 1, 512)(objective, options, at), dataset="synthetic")


_SMALL_DIAG = (("steps", 3), ("spsa_n", 16), ("spsa_steps", 3), ("spsa_samples", 8))
T1_SCALES: dict[str, T1Scale] = {
    "smoke": T1Scale((0.1, 0.2), ("8/255", "16/255"), 0.025, (0.1, 0.2), 32, _synthetic_config,
                     apgd_steps=3, mt_steps=3, mt_k=2, margin_restarts=1, convergence_steps=(4,),
                     diag=_SMALL_DIAG, diag_n=32, pgd_steps=(2, 3),
                     models=("SCE", "MMC-10", "AT10 tar (MMC-10)")),
    "cpu": T1Scale((0.1, 0.2), ("8/255", "16/255"), 0.025, (0.05, 0.1, 0.15, 0.2, 0.3), 1000,
                   mnist_config(10, 3, None)),
    "paper": T1Scale((8 / 255, 16 / 255), ("8/255", "16/255"), 2 / 255,
                     (2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255), 10_000, _cifar_config, diag_n=500),
}


def _pgd(label: str, eps: float, steps: int, step: float, targeted: bool = False, **extra: Any) -> AttackSpec:
    return AttackSpec(label, "pgd", {"eps": eps, "steps": steps, "step_size": step, "targeted": targeted,
                                     "random_start": True, **extra})


def _col(steps: int, mode: str, eps_name: str) -> str:
    return f"PGD{steps} {mode} eps={eps_name}"


def _steps_label(key: str, paper_steps: int, steps: int) -> str:
    """The label of our attack for the paper's column ``key``: the key itself, plus our step count if it differs."""
    return key if steps == paper_steps else f"{key} [{steps} steps]"


def paper_suite(s: T1Scale) -> dict[str, AttackSpec]:
    """Paper column -> attack: the paper's PGD columns (adaptive loss: the attacks' default), the convergence
    check and non-adaptive PGD-50 on cross-entropy."""
    specs = {}
    for eps, name in zip(s.eps, s.eps_names):
        for paper_steps, steps in zip((10, 50), s.pgd_steps):
            for m in ("tar", "un"):
                key = _col(paper_steps, m, name)
                specs[key] = _pgd(_steps_label(key, paper_steps, steps), eps, steps, s.step, m == "tar")
        for st in s.convergence_steps:
            specs[_col(st, "un", name)] = _pgd(_col(st, "un", name), eps, st, s.step)
        key = f"PGD50 un CE (non-adaptive) eps={name}"
        specs[key] = _pgd(_steps_label(key, 50, s.pgd_steps[1]), eps, s.pgd_steps[1], s.step, loss="ce")
    return specs


def strong_suite(s: T1Scale, eps: float) -> list[AttackSpec]:
    """Ensemble for the per-example worst case at ``eps`` (the paper's PGD-50 first, so its accuracy is exact)."""
    at = f" eps={eps:.4g}"
    ten, fifty = s.pgd_steps
    return [
        _pgd(f"PGD{fifty} un{at}", eps, fifty, s.step),
        _pgd(f"PGD{fifty} tar{at}", eps, fifty, s.step, True),
        _pgd(f"PGD{ten} un{at}", eps, ten, s.step),
        _pgd(f"PGD{ten} tar{at}", eps, ten, s.step, True),
        AttackSpec(f"APGD-CE{at}", "apgd", {"eps": eps, "steps": s.apgd_steps, "loss": "ce"}),
        AttackSpec(f"APGD-DLR targeted{at}", "apgd", {"eps": eps, "steps": s.apgd_steps, "loss": "dlr",
                                                     "targeted": True}),
        _pgd(f"PGD{s.mt_steps} margin x{s.margin_restarts} restarts{at}", eps, s.mt_steps, s.step,
             loss="adaptive-margin", restarts=s.margin_restarts),
        AttackSpec(f"MT-PGD{s.mt_steps} ({s.mt_k} targets){at}", "multitarget",
                   {"eps": eps, "steps": s.mt_steps, "step_size": s.step, "k": s.mt_k}),
    ]


def _acc(results: dict[str, Any], model: str, column: str) -> float:
    """Our accuracy (%) of ``model`` in ``column`` (a KeyError if this scale did not measure it)."""
    return 100.0 * float(results["models"][model]["columns"][column])


def table1_claims(s: T1Scale) -> list[Claim]:
    e1, e2 = s.eps_names
    un50 = [_col(50, "un", e) for e in s.eps_names]

    def mmc_beats_sce(results: dict[str, Any]) -> tuple[bool | None, str]:
        gaps = [(c, _acc(results, "MMC-10", c), _acc(results, "SCE", c)) for c in un50]
        return all(m >= x + 5 for _, m, x in gaps), "; ".join(f"{c}: MMC-10 {m:.1f} vs SCE {x:.1f}"
                                                               for c, m, x in gaps)

    def mmc_beats_sce_strongest(results: dict[str, Any]) -> tuple[bool | None, str]:
        gaps = [(e, _acc(results, "MMC-10", f"strongest eps={e}"), _acc(results, "SCE", f"strongest eps={e}"))
                for e in s.eps_names]
        return all(m >= x + 5 for _, m, x in gaps), "; ".join(f"eps={e}: MMC-10 {m:.1f} vs SCE {x:.1f}"
                                                               for e, m, x in gaps)

    def converges(results: dict[str, Any]) -> tuple[bool | None, str]:
        worst = ("", 0.0)
        for model in results["models"]:
            for e in s.eps_names:
                base = _acc(results, model, _col(50, "un", e))
                for st in s.convergence_steps:
                    drop = base - _acc(results, model, _col(st, "un", e))
                    if drop > worst[1] or not worst[0]:
                        worst = (f"{model}, eps={e}, PGD{st}", drop)
        return worst[1] <= 2.0, f"largest drop from PGD50: {worst[1]:.1f} points ({worst[0]})"

    def at_costs_clean(results: dict[str, Any]) -> tuple[bool | None, str]:
        pairs = [(at, base) for at, base in (("AT10 tar (SCE)", "SCE"), ("AT10 un (SCE)", "SCE"),
                                             ("AT10 tar (MMC-10)", "MMC-10"), ("AT10 un (MMC-10)", "MMC-10"))
                 if at in results["models"]]
        if not pairs:
            return None, "no AT model at this scale"
        diffs = [(at, _acc(results, at, "clean"), _acc(results, base, "clean")) for at, base in pairs]
        return all(a < b for _, a, b in diffs), "; ".join(f"{at} {a:.1f} vs {b:.1f}" for at, a, b in diffs)

    def at_mmc_beats_at_sce(results: dict[str, Any]) -> tuple[bool | None, str]:
        rows = [(m, a, b) for m, a, b in (("tar", "AT10 tar (MMC-10)", "AT10 tar (SCE)"),
                                          ("un", "AT10 un (MMC-10)", "AT10 un (SCE)"))]
        if any(a not in results["models"] for _, a, _ in rows):
            return None, "no AT model at this scale"
        cmp = [(a, b, c, _acc(results, a, c), _acc(results, b, c)) for _, a, b in rows for c in un50]
        return all(x >= y for *_, x, y in cmp), "; ".join(f"{c}: {a} {x:.1f} vs {b} {y:.1f}"
                                                           for a, b, c, x, y in cmp)

    def mmc_best_plain(results: dict[str, Any]) -> tuple[bool | None, str]:
        plain = ["SCE", "Center loss", "MMLDA", "L-GM", "MMC-10"]
        col = _col(10, "un", e1)
        accs = {m: _acc(results, m, col) for m in plain}
        best = max(accs, key=lambda m: accs[m])
        return best == "MMC-10", f"{col}: " + ", ".join(f"{m} {a:.1f}" for m, a in accs.items())

    return [
        Claim("The MMC loss significantly improves robustness even under adaptive attacks: MMC-10 keeps at "
              "least 5 points more than SCE under the paper's PGD50 un at both eps", "l.205, Table 1", mmc_beats_sce),
        Claim("(beyond the paper) The same gain survives the strongest attack: MMC-10 keeps at least 5 points more "
              "than SCE under the per-example worst case of the ensemble at both eps", "our ensemble",
              mmc_beats_sce_strongest),
        Claim("Among the objectives without AT, MMC-10 is the most robust under PGD10 un at the first eps",
              "Table 1", mmc_best_plain),
        Claim("PGD-100/200 accuracy has converged relative to PGD-50: no model loses more than 2 points "
              "(untargeted, both eps)", "l.205 (M11)", converges),
        Claim("Adversarial training costs clean accuracy (each AT model below its non-AT objective)",
              "l.197, Table 1", at_costs_clean),
        Claim("Combined with AT, MMC-10 beats SCE under unseen (untargeted PGD50) attacks, for targeted and "
              "untargeted AT, at both eps", "l.205, Table 1", at_mmc_beats_at_sce),
    ]


def strong_name(prefix: str, eps: float) -> str:
    """The evaluation name of the strongest ensemble at ``eps`` (``PREFIX-strong-EPS``; a cache key in ``RUN/eval/``)."""
    return f"{prefix}-strong-{eps:.4g}"


def t1_columns(ctx: Context, s: T1Scale, run_dir: Path, n: int, prefix: str) -> dict[str, Any]:
    """Table 1's columns of one model: the paper's PGD columns (:func:`paper_suite`), the strongest ensemble at
    each eps and the robustness curve, evaluated as ``RUN/eval/PREFIX*`` (so recipes using the same prefix and
    scale share the evaluations).  Returns ``{"run", "config", "columns", "curve", "robust"}``: ``curve`` holds the
    paper's attack (PGD-50 un, the ensemble's first member) and the per-example worst case at each eps, ``robust``
    the worst case's per-example verdicts (eps -> 0/1 per test point)."""
    suite = paper_suite(s)
    key_of = {spec.label: key for key, spec in suite.items()}
    res = ctx.evaluate(run_dir, list(suite.values()), name=prefix, n=n)
    cols = {"clean": res["clean_accuracy"], **{key_of[a["label"]]: a["robust_accuracy"] for a in res["attacks"]}}
    curve: dict[str, list[float]] = {"eps": [], "paper_attack": [], "strongest": []}
    robust: dict[float, list[int]] = {}
    for eps in sorted(set(s.curve_eps) | set(s.eps)):
        strong = ctx.evaluate(run_dir, strong_suite(s, eps), name=strong_name(prefix, eps), n=n, worst_case=True)
        curve["eps"].append(eps)
        curve["paper_attack"].append(strong["attacks"][0]["robust_accuracy"])
        curve["strongest"].append(strong["worst_case_accuracy"])
        robust[eps] = strong["worst_case_robust"]
        if eps in s.eps:
            name = s.eps_names[s.eps.index(eps)]
            cols[f"strongest eps={name}"] = strong["worst_case_accuracy"]
            cols[f"strongest attacks eps={name}"] = [a["label"] for a in strong["attacks"]]
    return {"run": str(run_dir), "config": res["config"], "columns": cols, "curve": curve, "robust": robust}


def robustness_figure(ctx: Context, curves: dict[str, dict[str, list[float]]], paper_attack: str, ylabel: str,
                      title: str, name: str = "robustness_curve") -> str:
    """The two-panel accuracy-vs-eps figure of the MMC recipes: each model's curve under the paper's attack
    (``curve["paper_attack"]``) and the strongest (``curve["strongest"]``), one colour per model; saved as NAME.png.
    ``curve["paper_eps"]``, when present, gives the paper attack's own eps grid (else ``curve["eps"]``)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colours = plt.get_cmap("tab10")
    for i, (row, curve) in enumerate(curves.items()):
        for ax, key, grid in zip(axes, ("paper_attack", "strongest"), ("paper_eps", "eps")):
            xs = curve.get(grid, curve["eps"])
            ax.plot(xs, [100 * v for v in curve[key]], marker="o", ms=3, color=colours(i % 10), label=row)
    robustness_panels(fig, axes, paper_attack, ylabel, title)
    return ctx.figure(fig, name)


def _t1_run(ctx: Context) -> Outcome:
    s = T1_SCALES[ctx.scale]
    n = ctx.n_eval(s.n)
    plt = pyplot()
    models: dict[str, dict[str, Any]] = {}
    diags: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    dataset = s.config("sce", {}, None).dataset
    x_test, y_test = datasets.load(dataset, "test", ctx.data_dir)
    for row in s.models:
        objective, options, at = T1_MODELS[row]
        run_dir = ctx.train(row, s.config(objective, options, at))
        ctx.log(f"evaluating {row} on {n} test points")
        models[row] = t1_columns(ctx, s, run_dir, n, f"mmc-table1-{ctx.scale}")
        del models[row]["robust"]
        curves[row] = models[row]["curve"]
        diags[row] = ctx.diagnose(run_dir, x_test[:s.diag_n], y_test[:s.diag_n], eps=s.eps[0], **dict(s.diag))

    paper = MMC_PAPER.table("M1")
    t1_cols = [c for c in paper["SCE"] if c != "clean"]
    ours_eps = dict(zip(s.eps_names, s.eps))
    header = ["model", "clean", *(c.replace(f"eps={e}", f"eps={e} (ours {ours_eps[e]:.4g})")
                                  for c in t1_cols for e in s.eps_names if f"eps={e}" in c)]
    rows = []
    for row, info in models.items():
        rows.append([f"{row} (ours)", pct(info["columns"]["clean"]), *(pct(info["columns"][c]) for c in t1_cols)])
        rows.append([f"{row} (paper)", paper[row]["clean"], *(paper[row][c] for c in t1_cols)])
    lo, hi = MMC_PAPER.lines("M1")
    sections = [f"## Table 1: accuracy (%) under white-box PGD, ours beside the paper's\n\n"
                f"The paper's rows: Table 1 of {MMC_PAPER.title} (l.{lo}-{hi}), CIFAR-10, ResNet-32. Ours: the first "
                f"{n} test images of {dataset}. Attacks on every objective use its adaptive loss (the MMC paper "
                f"App. B.4; for SCE this is CE), random start, step {s.step:.4g}.\n\n" + markdown_table(header, rows)]
    honest = []
    for row, info in models.items():
        c = info["columns"]
        cells = []
        for e in s.eps_names:
            paper_best = min(c[_col(st, m, e)] for st in (10, 50) for m in ("tar", "un"))
            cells += [pct(paper_best), pct(c[f"PGD50 un CE (non-adaptive) eps={e}"]), pct(c[f"strongest eps={e}"])]
        honest.append([row, *cells])
    h_header = ["model"]
    for e in s.eps_names:
        h_header += [f"best paper attack eps={e}", f"non-adaptive PGD50 un eps={e}", f"**strongest** eps={e}"]
    sections.append("## Honest columns: the paper's attacks, non-adaptive PGD and the strongest attack\n\n"
                    "*best paper attack*: the lowest of the four PGD columns above. *non-adaptive*: PGD-50 on "
                    "cross-entropy of the model's logits (what the paper calls the SCE-variant objective, l.201). "
                    "*strongest*: the per-example worst case over an ensemble run on the survivors of each other "
                    f"attack: {', '.join(models['SCE']['columns'][f'strongest attacks eps={s.eps_names[0]}'])}.\n\n"
                    + markdown_table(h_header, honest))
    conv_header = ["model", *(_col(st, "un", e) for e in s.eps_names for st in (10, 50, *s.convergence_steps))]
    conv = [[row, *(pct(info["columns"][h]) for h in conv_header[1:])] for row, info in models.items()]
    sections.append("## PGD convergence (M11)\n\nThe paper (l.205) reports that PGD-100 and PGD-200 accuracy "
                    "converges relative to PGD-50, without numbers. Ours, untargeted, adaptive:\n\n"
                    + markdown_table(conv_header, conv))

    robustness_figure(ctx, curves, "adaptive PGD-50 untargeted", f"accuracy (%) on {n} {dataset} test images",
                      f"mmc-table1 robustness curves ({ctx.scale} scale)")
    colours = plt.get_cmap("tab10")

    fig, ax = plt.subplots(figsize=(6, 4))
    keys = [_col(st, "un", s.eps_names[0]) for st in (10, 50, *s.convergence_steps)]
    steps = [*s.pgd_steps, *s.convergence_steps]
    for i, (row, info) in enumerate(models.items()):
        ax.plot(steps, [100 * info["columns"][k] for k in keys], marker="o", ms=3, color=colours(i), label=row)
    ax.set_xscale("log")
    label_axes(ax, "PGD steps (untargeted, adaptive)", "accuracy (%)",
               f"PGD convergence at eps={s.eps[0]:.4g} ({ctx.scale} scale)")
    ctx.figure(fig, "pgd_convergence")

    deviations = []
    if ctx.scale != "paper":
        cfg = s.config("sce", {}, None)
        at_cfg = s.config("sce", {}, True)
        assert at_cfg.adversarial is not None
        deviations = [
            ("dataset", "CIFAR-10 (all 10,000 test images)", f"MNIST, first {n} test images"
             + (f", {cfg.train_limit} training images" if cfg.train_limit else "")),
            ("backbone", "ResNet-32 (ResNet-v2, five core blocks)", "LeNet-5 (84-d feature layer, no ReLU after it)"),
            ("epochs", "200 (CIFAR-10); 40 on MNIST (l.174)", f"{cfg.epochs} (standard), {at_cfg.epochs} (AT)"),
            ("lr schedule", "0.01, x0.1 at epochs 100 and 150", "0.01, constant (the run is shorter than 100 epochs)"),
            ("batch size", "not stated (the reproducibility report: 50)", str(cfg.batch_size)),
            ("eps", "8/255 and 16/255, step 2/255", f"{s.eps[0]:g} and {s.eps[1]:g}, step {s.step:g} "
             "(the same 4 : 8 : 1 ratios on MNIST's [0, 1] pixels)"),
            ("AT", "10-step PGD, eps 8/255, step 2/255", f"10-step PGD, eps {at_cfg.adversarial.eps:g}, "
             f"step {at_cfg.adversarial.step_size:g}"),
            ("random restarts", "several, number not stated (l.205)", "1 for the paper's columns; the ensemble adds "
             f"{s.margin_restarts} restarts of margin PGD"),
        ]
        if ctx.scale == "smoke":
            deviations[0] = ("dataset", "CIFAR-10 (all 10,000 test images)",
                             f"synthetic 16x16 blobs ({cfg.train_limit} training images), first {n} test points")
            deviations += [
                ("models", "the nine rows of Table 1", ", ".join(s.models)),
                ("attack budget", "PGD10/PGD50; convergence PGD100/200",
                 f"PGD{s.pgd_steps[0]}/PGD{s.pgd_steps[1]} for the PGD10/PGD50 columns; convergence PGD"
                 f"{'/'.join(map(str, s.convergence_steps))}; ensemble: APGD {s.apgd_steps} steps, multi-target "
                 f"{s.mt_k} targets x {s.mt_steps} steps")]
    results = {"n": n, "dataset": dataset, "eps": dict(zip(s.eps_names, s.eps)), "step": s.step,
               "models": models, "paper_numbers": paper}
    return Outcome(sections, results, table1_claims(s), deviations, diags)


MMC_TABLE1 = Recipe(
    "mmc-table1", "white-box PGD on SCE, Center loss, MMLDA, L-GM, MMC-10 and PGD-AT (MMC paper Table 1)",
    ("M1", "M11"), MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, LeNet-5, 3 of the 9 models, 1 epoch on 512 images, 32 test points, "
                    "reduced attack budget",
           "cpu": "MNIST, LeNet-5, 9 models (10 epochs; AT 3 epochs of PGD-10), eps 0.1/0.2 step 0.025, "
                  "1,000 test points, strong ensemble and curve at eps 0.05-0.3",
           "paper": "CIFAR-10 (--data-dir with the python files), ResNet-32, 200 epochs, eps 8/255 and 16/255, "
                    "all 10,000 test images"},
    times={"smoke": "measured 21 s", "cpu": "estimated ~110 min with --threads 1 (measured: 23 s per LeNet-5 "
                                              "epoch, 280 s per PGD-10 AT epoch; ~20 min of attacks)",
           "paper": "estimated ~120 GPU hours on an RTX 2080 Ti (the reproducibility report's Table 1: ~54 min "
                    "per 50 CIFAR-10 epochs, AT ~7x; 5 x 3.6 h + 4 x 25 h)"},
    run=_t1_run)


# ----------------------------------------------------------------------------------------- mmc-centers
def algorithm1(c_mm: float, d: int, num_classes: int) -> torch.Tensor:
    """Algorithm 1 of the MMC paper (l.405-418), transcribed line by line (float64), for cross-checking.

    mu_1 = e_1, mu_i = 0; for i = 2..L: for j < i: mu_i(j) = -[1 + <mu_i, mu_j> (L-1)] / [mu_j(j) (L-1)];
    mu_i(i) = sqrt(1 - ||mu_i||^2); finally every mu_k *= C_MM.  Requires L <= d + 1.
    """
    big_l = num_classes
    mu = torch.zeros(big_l, d, dtype=torch.float64)
    mu[0, 0] = 1.0
    for i in range(1, big_l):
        for j in range(i):
            mu[i, j] = -(1 + float(mu[i] @ mu[j]) * (big_l - 1)) / (float(mu[j, j]) * (big_l - 1))
        if i < d:
            mu[i, i] = max(0.0, 1 - float(mu[i] @ mu[i])) ** 0.5
    return mu * c_mm


def _centers_run(ctx: Context) -> Outcome:
    plt = pyplot()
    c_mm = 10.0 if ctx.scale != "smoke" else 1.0
    cases: dict[str, dict[str, Any]] = {}
    fig = plt.figure(figsize=(12, 4))
    for k, big_l in enumerate((2, 3, 4)):
        d = big_l - 1 if big_l < 4 else 3
        ours = mm_centers(big_l, d, c_mm)
        literal = algorithm1(c_mm, d, big_l)
        gram = ours @ ours.T
        off = gram[~torch.eye(big_l, dtype=torch.bool)]
        target = -c_mm ** 2 / (big_l - 1)
        cases[f"L={big_l}"] = {
            "d": d, "c_mm": c_mm, "centers": ours.tolist(), "norms": ours.norm(dim=1).tolist(),
            "inner_products": gram.tolist(), "expected_inner_product": target,
            "max_inner_product_error": float((off - target).abs().max()),
            "max_difference_to_algorithm1": float((ours - literal).abs().max()),
            "max_norm_error": float((ours.norm(dim=1) - c_mm).abs().max())}
        pts = ours.numpy()
        if big_l == 4:
            ax = fig.add_subplot(1, 3, k + 1, projection="3d")
            for a in range(4):
                for b in range(a + 1, 4):
                    ax.plot(*zip(pts[a], pts[b]), color="grey", lw=1)
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=40, c=range(4), cmap="tab10", depthshade=False)
            for a in range(4):
                ax.plot([0, pts[a, 0]], [0, pts[a, 1]], [0, pts[a, 2]], ls=":", color="black", lw=0.8)
        else:
            ax = fig.add_subplot(1, 3, k + 1)
            xy = pts if d == 2 else torch.cat([ours, torch.zeros(big_l, 1, dtype=torch.float64)], 1).numpy()
            closed = list(range(big_l)) + [0]
            ax.plot(xy[closed, 0], xy[closed, 1], color="grey", lw=1)
            ax.scatter(xy[:, 0], xy[:, 1], s=40, c=range(big_l), cmap="tab10", zorder=3)
            for a in range(big_l):
                ax.plot([0, xy[a, 0]], [0, xy[a, 1]], ls=":", color="black", lw=0.8)
            ax.set_aspect("equal")
            ax.set_xlim(-1.2 * c_mm, 1.2 * c_mm)
            ax.set_ylim(-1.2 * c_mm, 1.2 * c_mm)   # the segment (d = 1) is drawn on the x axis of a square panel
            ax.grid(alpha=0.3)
        ax.set_title(f"L = {big_l} ({['segment', 'equilateral triangle', 'regular tetrahedron'][k]})\n"
                     f"C_MM = {c_mm:g}", fontsize=10)
    fig.suptitle("Max-Mahalanobis centers (Algorithm 1), as in the MMC paper's Figure 5", y=0.99)
    fig.tight_layout()
    ctx.figure(fig, "mm_centers")
    rows = [[name, str(c["d"]), f"{c['expected_inner_product']:.4g}",
             ", ".join(f"{v:.4g}" for v in sorted({round(x, 9) for r in c["inner_products"] for x in r})),
             f"{c['max_inner_product_error']:.1e}", f"{c['max_difference_to_algorithm1']:.1e}"]
            for name, c in cases.items()]
    sections = ["## Centers and their inner products\n\nAlgorithm 1 (l.405-418) builds unit vectors with "
                "<mu_i, mu_j> = -1/(L-1) (the loop solves exactly this for each coordinate) and scales them by C_MM, "
                "so <mu_i, mu_j> = -C_MM^2/(L-1) and ||mu_i|| = C_MM (l.402: the 2018 paper's C = ||mu||^2 is "
                "C_MM^2, so its -C/(L-1) is the same number). The issue's '-C_MM/(L-1)' holds only for C_MM = 1. "
                "`robustloss.centers.mm_centers` is compared with a line-by-line transcription of Algorithm 1.\n\n"
                + markdown_table(["case", "d", "expected -C_MM^2/(L-1)", "Gram matrix entries",
                                  "max error of the inner products", "max difference to Algorithm 1"], rows)]

    def inner(results: dict[str, Any]) -> tuple[bool | None, str]:
        errs = {k: v["max_inner_product_error"] for k, v in results["cases"].items()}
        return all(e < 1e-9 * c_mm ** 2 for e in errs.values()), ", ".join(f"{k}: {e:.1e}" for k, e in errs.items())

    def same(results: dict[str, Any]) -> tuple[bool | None, str]:
        errs = {k: v["max_difference_to_algorithm1"] for k, v in results["cases"].items()}
        return all(e < 1e-9 * c_mm for e in errs.values()), ", ".join(f"{k}: {e:.1e}" for k, e in errs.items())

    def shapes(results: dict[str, Any]) -> tuple[bool | None, str]:
        # segment: opposite points; triangle / tetrahedron: all pairwise distances equal (regular simplex)
        out = []
        for k, v in results["cases"].items():
            mu = torch.tensor(v["centers"], dtype=torch.float64)
            dist = torch.cdist(mu, mu)[~torch.eye(len(mu), dtype=torch.bool)]
            out.append((k, float(dist.max() - dist.min())))
        return all(e < 1e-9 * c_mm for _, e in out), ", ".join(f"{k}: spread of distances {e:.1e}" for k, e in out)

    claims = [
        Claim("Every pair of MM centers has inner product -C_MM^2/(L-1) (Algorithm 1)", "l.405-418", inner, exact=True),
        Claim("L = 2, 3, 4 give the vertices of a segment, an equilateral triangle and a regular tetrahedron "
              "(all pairwise distances equal)", "l.402, Fig. 5", shapes, exact=True),
        Claim("(implementation) robustloss.centers.mm_centers equals Algorithm 1 transcribed literally",
              "l.405-418", same, exact=True),
    ]
    return Outcome(sections, {"cases": cases}, claims)


MMC_CENTERS = Recipe(
    "mmc-centers", "Max-Mahalanobis centers of Algorithm 1 for L = 2, 3, 4 (MMC paper Fig. 5)", ("M12",), MMC_PAPER,
    plans={"smoke": "C_MM = 1, L = 2, 3, 4", "cpu": "C_MM = 10, L = 2, 3, 4", "paper": "C_MM = 10, L = 2, 3, 4"},
    times={"smoke": "measured ~2 s", "cpu": "measured ~2 s", "paper": "measured ~2 s (no training)"},
    run=_centers_run)
