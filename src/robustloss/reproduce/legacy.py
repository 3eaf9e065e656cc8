"""The first recipes (one suite on a few runs), kept under their names inside the framework.

``mnist-quick`` is ``make demo``; ``mnist-objectives`` runs every objective with the
same recipe; ``pc-mnist-table1`` is the PC paper's Table 1 (MNIST columns; to become
an alias of ``pc-table1``).  Their ``cpu`` scale is the recipe as it always was;
``smoke`` trains 1 epoch on 256 images and evaluates 40 test points.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from robustloss.evaluation.report import results_table
from robustloss.evaluation.suite import SUITES
from robustloss.reproduce.framework import Claim, Context, Outcome, Recipe, pyplot
from robustloss.reproduce.papers import Paper
from robustloss.reproduce.papers.pc_paper import PC_PAPER
from robustloss.training.config import TrainConfig


def _mnist(objective: str, **options: Any) -> TrainConfig:
    # the MMC paper trains 40 epochs on MNIST (l.174); 5 keep the quick recipe within minutes on 2 CPU cores
    return TrainConfig(dataset="mnist", model="lenet5", objective=objective, objective_options=dict(options),
                       epochs=5, batch_size=128, lr=0.01, momentum=0.9, seed=0)


def _pc_mnist(objective: str, **options: Any) -> TrainConfig:
    # the PC paper Sec. 5: LeNet-5, Adam, lr 0.01, batch 256; PC warms up with CE for T = 50 epochs, then trains
    # with PC (Eqs. 6 + 16) for T more; the CE baseline trains 2T = 100 epochs.  No weight decay is stated.
    return TrainConfig(dataset="mnist", model="lenet5", objective=objective, objective_options=dict(options),
                       epochs=100, batch_size=256, optimizer="adam", lr=0.01, weight_decay=0.0, seed=0)


_EPS = re.compile(r"(?:eps=| )(\d+(?:\.\d+)?)$")


def _table_recipe(name: str, title: str, experiments: tuple[str, ...], runs: dict[str, TrainConfig], suite: str,
                  n: int, cpu_time: str, paper: Paper | None = None, experiment: str = "",
                  claims: list[Claim] | None = None) -> Recipe:
    def run(ctx: Context) -> Outcome:
        plt = pyplot()
        count = ctx.n_eval(40 if ctx.scale == "smoke" else n)
        results: dict[str, dict[str, Any]] = {}
        for label, config in runs.items():
            if ctx.scale == "smoke":
                config = replace(config, epochs=1, train_limit=256,
                                 objective_options={k: (0 if k == "warmup_epochs" else v)
                                                    for k, v in config.objective_options.items()})
            run_dir = ctx.train(label, config)
            ctx.log(f"evaluating {label} on {count} test images")
            results[label] = ctx.evaluate(run_dir, SUITES[suite], name=suite, n=count)
        published = paper.table(experiment) if paper is not None else {}
        note = (f" Rows marked (paper) are {paper.title}, {experiment} (l.{paper.lines(experiment)[0]}-"
                f"{paper.lines(experiment)[1]}), printed below ours, never instead of them." if paper else "")
        sections = [f"## Accuracy (%) on the first {count} test images\n\nSuite `{suite}`; every attack uses the "
                    f"objective's adaptive loss unless its label names another.{note}\n\n"
                    + results_table(results, published)]
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        curves: dict[str, dict[str, list[float]]] = {}
        for i, (label, res) in enumerate(results.items()):
            by_eps: dict[float, float] = {0.0: res["clean_accuracy"]}
            for att in res["attacks"]:
                match = _EPS.search(att["label"])
                if match and float(match.group(1)) > 0:
                    e = float(match.group(1))
                    by_eps[e] = min(by_eps.get(e, 1.0), att["robust_accuracy"])
            eps = sorted(by_eps)
            curves[label] = {"eps": eps, "lowest_attack": [by_eps[e] for e in eps]}
            ax.plot(eps, [100 * by_eps[e] for e in eps], marker="o", ms=3, color=plt.get_cmap("tab20")(i % 20),
                    label=label)
        ax.set_xlabel("L-inf eps")
        ax.set_ylabel("accuracy (%): lowest single attack at each eps")
        ax.set_title(f"{name} ({ctx.scale} scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ctx.figure(fig, "robustness_curve")
        models = {label: {"columns": {"clean": r["clean_accuracy"],
                                      **{a["label"]: a["robust_accuracy"] for a in r["attacks"]}}, "run": r["run"]}
                  for label, r in results.items()}
        out = {"n": count, "suite": suite, "models": models, "curves": curves, "evaluations": results,
               "paper_numbers": published}
        return Outcome(sections, out, list(claims or []))

    plans = {"smoke": "1 epoch on 256 MNIST training images, 40 test points",
             "cpu": f"the recipe as defined ({next(iter(runs.values())).epochs} epochs, {n} test points)"}
    return Recipe(name, title, experiments, paper, plans, {"smoke": "measured < 20 s", "cpu": cpu_time}, run)


def _pc_gain(results: dict[str, Any]) -> tuple[bool | None, str]:
    ce, pc = (100 * results["models"][m]["columns"]["PGD 0.1"] for m in ("CE", "PC"))
    return pc >= ce + 10, f"PGD 0.1: PC {pc:.1f} vs CE {ce:.1f} (the paper: 72.3 vs 49.0)"


def _mmc_beats_sce(results: dict[str, Any]) -> tuple[bool | None, str]:
    col = "PGD40-un eps=0.1"
    mmc, sce = (100 * results["models"][m]["columns"][col] for m in ("MMC-10", "SCE"))
    return mmc >= sce + 5, f"{col}: MMC-10 {mmc:.1f} vs SCE {sce:.1f}"


_MMC_CLAIM = Claim("MMC-10 is more robust than SCE under adaptive PGD (at least 5 points, PGD-40 untargeted, "
                   "eps 0.1)", "the MMC paper, l.205 and Table 1 (CIFAR-10)", _mmc_beats_sce)

LEGACY = [
    _table_recipe("mnist-quick", "LeNet-5 on MNIST, SCE vs MMC-10, adaptive PGD (10/40 steps, eps 0.1-0.3)",
                  ("M1 (MNIST analogue)",), {"SCE": _mnist("sce"), "MMC-10": _mnist("mmc", c_mm=10.0)},
                  "mnist-pgd", 1000, "measured ~3 min (make demo)", claims=[_MMC_CLAIM]),
    _table_recipe("mnist-objectives", "LeNet-5 on MNIST, every objective, adaptive PGD (10/40 steps, eps 0.1-0.3)",
                  ("M1 (MNIST analogue)",),
                  {"SCE": _mnist("sce"), "Center loss": _mnist("center"), "MMLDA": _mnist("mmlda"),
                   "L-GM": _mnist("lgm"), "MMC-10": _mnist("mmc"), "MMC-10(rand)": _mnist("mmc-rand"),
                   "EMC": _mnist("emc"), "I-SCE": _mnist("isce"), "PC": _mnist("pc"), "GCE": _mnist("gce"),
                   "Label smoothing": _mnist("label-smoothing"),
                   # ArcFace's defaults (s=64, m=0.5) leave LeNet-5 at chance with this SGD recipe (measured 9.6%
                   # test accuracy after 5 epochs; see objectives/arcface.py); s=16, m=0.2 train (our choice).
                   "ArcFace (s=16, m=0.2)": _mnist("arcface", s=16.0, m=0.2)},
                  "mnist-pgd", 1000, "measured ~8 min (454 s for the first eleven rows, one thread)",
                  claims=[_MMC_CLAIM]),
    _table_recipe("pc-mnist-table1", "the PC paper's Table 1 (MNIST): LeNet-5, CE vs PC loss with logit "
                  "constraints, FGSM/BIM/PGD/MIM/C&W", ("P4",),
                  {"CE": _pc_mnist("sce"), "PC": _pc_mnist("pc", warmup_epochs=50)}, "mnist-pc-table1", 1000,
                  "measured ~10 min (585 s)", PC_PAPER, "P4",
                  [Claim("PC is far more robust than CE under PGD at eps 0.1 (at least 10 points; the paper: +23.3)",
                         "the PC paper, Table 1", _pc_gain)]),
]
