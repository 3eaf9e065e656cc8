"""Recipes of the MMC paper's Tables 2-5: ``mmc-table2`` (M2-M4), ``mmc-table3`` (M5), ``mmc-table4`` (M6)
and ``mmc-table5`` (M7).  IDs, settings and numbers: ``seed-experiments.md``; the numbers are data in
:mod:`robustloss.reproduce.papers.mmc_paper`.

``mmc-table2`` and ``mmc-table3`` attack the models of ``mmc-table1`` (:data:`~robustloss.reproduce.mmc.T1_SCALES`
builds the very same :class:`TrainConfig` s, so the shared run cache trains nothing new) and reuse its
evaluations: the strongest ensemble at each eps (``RUN/eval/mmc-table1-SCALE-strong-EPS``) is read, not rerun,
when ``mmc-table1`` ran first.

MNIST analogues of the paper's CIFAR-10 attack settings (``cpu`` scale).  ``mmc-table1`` maps the paper's
eps 8/255 to 0.1 on MNIST; every other L-inf quantity is scaled by the same factor
:data:`LINF_SCALE` = 0.1 / (8/255) = 3.1875:

* SPSA (the MMC paper, l.225: 10 iterations, batch 128, lr 0.01, delta 0.01): lr and delta 0.0319.  With
  Adam each step moves a pixel by about lr, so 10 steps at the paper's lr 0.01 reach only 0.1 and can never
  use MNIST's eps 0.2 (on CIFAR-10 the same 10 steps reach 0.1 = 3.2 x 8/255); at 0.0319 they reach 0.32,
  3.2 x the first eps as in the paper.  Measured at eps 0.2 on 20 MNIST points (mmc-table1's MMC-10 model,
  mid-training): at lr 0.01 the unfooled iterates end at most 0.099 from x and 1 of 20 is fooled; at 0.0319
  they reach 0.2 and 4 of 20 are fooled.
* Gaussian noise (l.207, sigma 0.05): both the paper's sigma and sigma x 3.1875 = 0.16 (0.05 leaves
  MNIST's nearly binary digits almost unchanged); rotation: the paper's +-30 degrees.
* C&W-L2 (l.221: 9 binary-search steps from c = 0.01, 1,000 iterations per c, lr 0.005): 100 iterations per c
  at lr 0.05 (10x fewer iterations, 10x the step: measured on the fixture MMC-10 LeNet-5, it fools all of 8
  points, targeted and untargeted; ~1 s per point and model for all 9 constants on this shared machine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from robustloss import datasets
from robustloss.evaluation.report import markdown_table
from robustloss.evaluation.suite import AttackSpec
from robustloss.reproduce.framework import Claim, Context, Outcome, Recipe, label_axes, mnist_config, pct, pyplot
from robustloss.reproduce.mmc import (T1_MODELS, T1_SCALES, T1Scale, _cifar_config, _col,
                                      _synthetic_config, paper_suite, robustness_figure, t1_columns)
from robustloss.reproduce.papers.mmc_paper import MMC_PAPER, T2_COLUMNS
from robustloss.training.config import TrainConfig

#: the factor from the paper's CIFAR-10 L-inf settings to mmc-table1's MNIST ones (eps 8/255 -> 0.1)
LINF_SCALE = 0.1 / (8 / 255)


@dataclass(frozen=True)
class BBScale:
    """The C&W, SPSA and corruption settings of ``mmc-table2`` / ``mmc-table4`` at one scale."""

    n_cw: int
    n_spsa: int
    n_corrupt: int
    cw_steps: int = 1000        # the MMC paper, l.221
    cw_search: int = 9          # l.221
    cw_lr: float = 0.005        # l.221
    spsa_steps: int = 10        # SPSA_10 (l.178 subscript convention)
    spsa_samples: int = 128     # l.225 ("batch size")
    spsa_lr: float = 0.01       # l.225
    spsa_delta: float = 0.01    # l.225
    sigmas: tuple[float, ...] = (0.05,)   # l.207
    degrees: float = 30.0       # l.207
    draws: int = 5              # random draws of each corruption for its worst case (ours; the paper: not stated)


_SCALED = round(0.01 * LINF_SCALE, 4)
BB_SCALES: dict[str, BBScale] = {
    "smoke": BBScale(16, 16, 32, cw_steps=10, cw_search=3, cw_lr=0.05, spsa_steps=3, spsa_samples=8,
                     spsa_lr=_SCALED, spsa_delta=_SCALED, sigmas=(0.05, round(0.05 * LINF_SCALE, 2)), draws=2),
    "cpu": BBScale(100, 200, 1000, cw_steps=100, cw_lr=0.05, spsa_lr=_SCALED, spsa_delta=_SCALED,
                   sigmas=(0.05, round(0.05 * LINF_SCALE, 2))),
    "paper": BBScale(10_000, 10_000, 10_000),
}


def cw_spec(b: BBScale, targeted: bool, loss: str | None = None) -> AttackSpec:
    """C&W-L2 with binary search (adaptive margin loss unless ``loss``: "margin" is the non-adaptive one)."""
    params: dict[str, Any] = {"steps": b.cw_steps, "search_steps": b.cw_search, "lr": b.cw_lr,
                              "initial_const": 0.01, "targeted": targeted}
    if loss is not None:
        params["loss"] = loss
    label = (f"C&W {'tar' if targeted else 'un'}{' ' + loss if loss else ''} "
             f"[{b.cw_search}x{b.cw_steps} it, lr {b.cw_lr:g}]")
    return AttackSpec(label, "cw", params)


def spsa_spec(b: BBScale, eps: float, targeted: bool, *, samples: int | None = None,
              loss: str | None = None) -> AttackSpec:
    """SPSA with the scale's steps, lr and delta (adaptive form-1 loss unless ``loss``)."""
    samples = b.spsa_samples if samples is None else samples
    params: dict[str, Any] = {"eps": eps, "steps": b.spsa_steps, "samples": samples, "lr": b.spsa_lr,
                              "delta": b.spsa_delta, "targeted": targeted}
    if loss is not None:
        params["loss"] = loss
    label = (f"SPSA{b.spsa_steps} {'tar' if targeted else 'un'}{' ' + loss if loss else ''} eps={eps:.4g} "
             f"batch {samples} lr {b.spsa_lr:g}")
    return AttackSpec(label, "spsa", params)


def _success(res: dict[str, Any], attack: dict[str, Any]) -> float:
    """The fraction of the clean-correct points an attack fooled."""
    clean = res["clean_accuracy"]
    return (clean - attack["robust_accuracy"]) / clean if clean > 0 else 0.0


def _and(*vectors: list[int]) -> list[int]:
    return [int(all(v)) for v in zip(*vectors)]


def _mean(vector: list[int]) -> float:
    return sum(vector) / len(vector) if vector else float("nan")


def spsa_columns(ctx: Context, b: BBScale, s: T1Scale, run_dir: Path, prefix: str, robust: dict[float, list[int]],
                 eps_list: tuple[float, ...], adaptive_matters: bool) -> dict[str, Any]:
    """SPSA tar/un at each eps on the first ``n_spsa`` points; beside each: the white-box ensemble alone
    (``robust``: mmc-table1's per-example worst case) and the strongest (per example: the ensemble and both
    SPSA runs).  Each SPSA run is its own worst-case evaluation so its per-example verdicts are kept."""
    n = ctx.n_eval(b.n_spsa)
    cols: dict[str, Any] = {}
    for eps in eps_list:
        name = s.eps_names[s.eps.index(eps)]
        vectors = []
        for mode in ("tar", "un"):
            res = ctx.evaluate(run_dir, [spsa_spec(b, eps, mode == "tar")], name=f"{prefix}-spsa-{mode}-{eps:.4g}",
                               n=n, worst_case=True)
            cols[f"SPSA10 {mode} eps={name}"] = res["worst_case_accuracy"]
            cols["SPSA clean"] = res["clean_accuracy"]
            vectors.append(res["worst_case_robust"])
        ensemble = robust[eps][:n]
        cols[f"ensemble eps={name} (SPSA points)"] = _mean(ensemble)
        cols[f"strongest incl. SPSA eps={name}"] = _mean(_and(ensemble, *vectors))
        if adaptive_matters and eps == eps_list[0]:
            res = ctx.evaluate(run_dir, [spsa_spec(b, eps, False, loss="ce")], name=f"{prefix}-spsa-un-ce-{eps:.4g}",
                               n=n)
            cols[f"SPSA10 un CE (non-adaptive) eps={name}"] = res["attacks"][0]["robust_accuracy"]
    return cols


def cw_columns(ctx: Context, b: BBScale, run_dir: Path, prefix: str, adaptive_matters: bool) -> dict[str, Any]:
    """C&W tar/un: mean L2 distortion of the successes (the paper's metric) and the success rate; the
    non-adaptive C&W (margin on the plain logits) beside it where the objective's adaptive loss differs."""
    suite = {"C&W tar": cw_spec(b, True), "C&W un": cw_spec(b, False)}
    if adaptive_matters:
        suite["C&W un margin (non-adaptive)"] = cw_spec(b, False, "margin")
    res = ctx.evaluate(run_dir, list(suite.values()), name=f"{prefix}-cw", n=ctx.n_eval(b.n_cw))
    cols: dict[str, Any] = {}
    for key, attack in zip(suite, res["attacks"]):
        cols[key] = attack["mean_distortion"] if attack["mean_distortion"] == attack["mean_distortion"] else None
        cols[f"{key} success"] = _success(res, attack)
    return cols


def corruption_columns(ctx: Context, b: BBScale, run_dir: Path, prefix: str) -> dict[str, Any]:
    """Gaussian noise (each sigma) and rotation: one random draw (the paper's column) and the worst of
    ``draws`` draws per example (the strongest of these random corruptions)."""
    cols: dict[str, Any] = {}
    kinds = [(f"Noise sigma={sg:g}", "gaussian-noise", {"sigma": sg}) for sg in b.sigmas]
    kinds.append((f"Rotation {b.degrees:g} deg", "rotation", {"degrees": b.degrees}))
    for key, attack, params in kinds:
        suite = [AttackSpec(f"{key} draw {i + 1}", attack, params) for i in range(b.draws)]
        res = ctx.evaluate(run_dir, suite, name=f"{prefix}-{attack}-{next(iter(params.values())):g}",
                           n=ctx.n_eval(b.n_corrupt), worst_case=True)
        cols[key] = res["attacks"][0]["robust_accuracy"]
        cols[f"{key} worst of {b.draws}"] = res["worst_case_accuracy"]
    first = b.sigmas[0]
    cols["Noise"] = cols[f"Noise sigma={first:g}"]
    cols["Rotation"] = cols[f"Rotation {b.degrees:g} deg"]
    return cols


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _cw_cell(cols: dict[str, Any], key: str) -> str:
    return f"{_num(cols.get(key))} ({pct(cols.get(f'{key} success'))}%)"


def _models_dataset(s: T1Scale) -> str:
    return s.config("sce", {}, None).dataset


def _acc(results: dict[str, Any], model: str, column: str) -> float:
    return 100.0 * float(results["models"][model]["columns"][column])


def _diag(ctx: Context, s: T1Scale, run_dir: Path) -> dict[str, Any]:
    x, y = datasets.load(_models_dataset(s), "test", ctx.data_dir)
    return ctx.diagnose(run_dir, x[:s.diag_n], y[:s.diag_n], eps=s.eps[0], **dict(s.diag))


def _common_deviations(ctx: Context, s: T1Scale, paper_dataset: str) -> list[tuple[str, str, str]]:
    if ctx.scale == "paper":
        return []
    cfg = s.config("sce", {}, None)
    data = ("synthetic 16x16 blobs" if cfg.dataset == "synthetic" else "MNIST") + (
        f" ({cfg.train_limit} training images)" if cfg.train_limit else "")
    return [("dataset", paper_dataset, data),
            ("backbone", "ResNet-32 (ResNet-v2, five core blocks)", _backbone(cfg)),
            ("epochs", "200, lr x0.1 at 100 and 150 (l.174)", f"{cfg.epochs}, constant lr {cfg.lr:g}"),
            ("eps", "8/255 and 16/255", f"{s.eps[0]:g} and {s.eps[1]:g} (mmc-table1's MNIST analogue, x{LINF_SCALE:.4g})")]


def _backbone(cfg: TrainConfig) -> str:
    options = ", ".join(f"{k} {v}" for k, v in cfg.model_options.items())
    return {"lenet5": "LeNet-5", "resnet": "ResNet-v2"}.get(cfg.model, cfg.model) + (f" ({options})" if options else "")


def _bb_deviations(ctx: Context, b: BBScale) -> list[tuple[str, str, str]]:
    if ctx.scale == "paper":
        return []
    return [
        ("C&W", "9 binary-search steps from c = 0.01, 1,000 iterations per c, lr 0.005 (l.221)",
         f"{b.cw_search} steps from c = 0.01, {b.cw_steps} iterations per c, lr {b.cw_lr:g}; first "
         f"{ctx.n_eval(b.n_cw)} test points"),
        ("SPSA", "10 iterations, batch 128, lr 0.01, delta 0.01 (l.225)",
         f"{b.spsa_steps} iterations, batch {b.spsa_samples}, lr {b.spsa_lr:g}, delta {b.spsa_delta:g} (x{LINF_SCALE:.4g} "
         f"as eps: at lr 0.01 ten Adam steps move a pixel by at most ~0.1 and cannot use eps 0.2); first "
         f"{ctx.n_eval(b.n_spsa)} test points"),
        ("Gaussian noise", "sigma 0.05 (l.207), draws not stated",
         f"sigma {' and '.join(f'{sg:g}' for sg in b.sigmas)} (the paper's and x{LINF_SCALE:.4g}); 1 draw for the "
         f"paper's column, worst of {b.draws}; first {ctx.n_eval(b.n_corrupt)} test points"),
    ]


def _adaptive_matters(objective: str) -> bool:
    """For SCE the adaptive loss is CE (form 1) / the logit margin (form 2): the non-adaptive attack is the same."""
    return objective != "sce"


# -------------------------------------------------------------------------------------------- mmc-table2
#: mmc-table1's scales; at smoke scale only SCE and MMC-10 (the AT model adds time, not pipeline coverage)
T2_SCALES = {**T1_SCALES, "smoke": replace(T1_SCALES["smoke"], models=("SCE", "MMC-10"))}


def _t2_run(ctx: Context) -> Outcome:
    s, b = T2_SCALES[ctx.scale], BB_SCALES[ctx.scale]
    n1 = ctx.n_eval(s.n)
    models: dict[str, dict[str, Any]] = {}
    diags: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    t1_prefix = f"mmc-table1-{ctx.scale}"
    prefix = f"mmc-table2-{ctx.scale}"
    for row in s.models:
        objective, options, at = T1_MODELS[row]
        run_dir = ctx.train(row, s.config(objective, options, at))
        ctx.log(f"evaluating {row}")
        t1 = t1_columns(ctx, s, run_dir, n1, t1_prefix)    # mmc-table1's evaluations (read when cached)
        adaptive = _adaptive_matters(objective)
        cols: dict[str, Any] = {"clean": t1["columns"]["clean"],
                                **{f"strongest eps={e}": t1["columns"][f"strongest eps={e}"] for e in s.eps_names}}
        cols.update(cw_columns(ctx, b, run_dir, prefix, adaptive))
        cols.update(spsa_columns(ctx, b, s, run_dir, prefix, t1["robust"], s.eps, adaptive))
        cols.update(corruption_columns(ctx, b, run_dir, prefix))
        curve = {"paper_eps": [0.0, *s.eps],
                 "paper_attack": [cols["SPSA clean"], *(cols[f"SPSA10 un eps={e}"] for e in s.eps_names)],
                 "eps": [0.0, *t1["curve"]["eps"]], "strongest": [cols["clean"], *t1["curve"]["strongest"]]}
        curves[row] = curve
        models[row] = {"run": str(run_dir), "columns": cols, "curve": curve}
        diags[row] = _diag(ctx, s, run_dir)

    paper = MMC_PAPER.table("M2-M4")
    lo, hi = MMC_PAPER.lines("M2-M4")
    eps_of = dict(zip(s.eps_names, s.eps))
    header = ["model", "C&W tar (L2)", "C&W un (L2)",
              *(c.replace(f"eps={e}", f"eps={e} (ours {eps_of[e]:.4g})") for c in T2_COLUMNS[2:6]
                for e in s.eps_names if f"eps={e}" in c),
              f"Noise sigma={b.sigmas[0]:g}", f"Rotation +-{b.degrees:g}"]
    rows = []
    for row, info in models.items():
        c = info["columns"]
        rows.append([f"{row} (ours)", _num(c["C&W tar"]), _num(c["C&W un"]),
                     *(pct(c[k]) for k in T2_COLUMNS[2:6]), pct(c["Noise"]), pct(c["Rotation"])])
        rows.append([f"{row} (paper)", *(paper[row][k] for k in T2_COLUMNS)])
    dataset = _models_dataset(s)
    sections = [
        f"## Table 2: C&W distortion, SPSA and general transformations, ours beside the paper's\n\n"
        f"The paper's rows: Table 2 of {MMC_PAPER.title} (l.{lo}-{hi}), CIFAR-10, ResNet-32. Ours: {dataset}, the "
        f"models of mmc-table1. Part I: mean L2 distortion of the successful C&W examples (first "
        f"{ctx.n_eval(b.n_cw)} test points; larger = more robust). Part II: accuracy (%) under SPSA (first "
        f"{ctx.n_eval(b.n_spsa)} points). Part III: accuracy (%) under one random draw of Gaussian noise and of "
        f"a rotation (first {ctx.n_eval(b.n_corrupt)} points). Every attack uses the objective's adaptive loss "
        "(the MMC paper, App. B.4).\n\n" + markdown_table(header, rows)]
    h_header = ["model", "C&W un adaptive: L2 (success %)", "C&W un non-adaptive: L2 (success %)",
                "C&W tar: L2 (success %)"]
    for e in s.eps_names:
        h_header += [f"SPSA un eps={e}", f"white-box ensemble eps={e}", f"**strongest** eps={e}"]
    h_header += [f"SPSA un CE (non-adaptive) eps={s.eps_names[0]}"]
    for key in (*(f"Noise sigma={sg:g}" for sg in b.sigmas), f"Rotation {b.degrees:g} deg"):
        h_header += [f"{key}: 1 draw", f"**worst of {b.draws}**"]
    honest = []
    for row, info in models.items():
        c = info["columns"]
        cells = [_cw_cell(c, "C&W un"), _cw_cell(c, "C&W un margin (non-adaptive)") if "C&W un margin "
                 "(non-adaptive)" in c else "= adaptive (SCE)", _cw_cell(c, "C&W tar")]
        for e in s.eps_names:
            cells += [pct(c[f"SPSA10 un eps={e}"]), pct(c[f"ensemble eps={e} (SPSA points)"]),
                      pct(c[f"strongest incl. SPSA eps={e}"])]
        key_na = f"SPSA10 un CE (non-adaptive) eps={s.eps_names[0]}"
        cells.append(pct(c[key_na]) if key_na in c else "= adaptive (SCE)")
        for key in (*(f"Noise sigma={sg:g}" for sg in b.sigmas), f"Rotation {b.degrees:g} deg"):
            cells += [pct(c[key]), pct(c[f"{key} worst of {b.draws}"])]
        honest.append([row, *cells])
    sections.append(
        "## Honest columns: non-adaptive attacks, the white-box ensemble and the strongest\n\n"
        "*success %*: the share of the clean-correct points C&W fooled (the mean distortion is over these only; "
        "C&W is a minimum-norm attack, so its stronger alternative here is the non-adaptive C&W beside it, not the "
        "L-inf ensemble). "
        "*non-adaptive*: C&W on the margin of the plain logits, SPSA on cross-entropy of the logits. "
        "*white-box ensemble*: mmc-table1's per-example worst case (PGD, APGD, margin PGD, multi-target) on the SPSA "
        "points; *strongest*: per example, the ensemble and both SPSA runs together. A gradient-free SPSA below the "
        "white-box ensemble would point to gradient masking. *worst of k*: an example counts as robust only if "
        f"every one of {b.draws} random draws leaves it correct.\n\n" + markdown_table(h_header, honest))
    robustness_figure(ctx, curves, f"SPSA{b.spsa_steps} untargeted (batch {b.spsa_samples})",
                      f"accuracy (%) on {dataset} test images",
                      f"mmc-table2 robustness curves ({ctx.scale} scale; left: first {ctx.n_eval(b.n_spsa)} points, "
                      f"right: first {n1})")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    names = list(models)
    for k, (key, off) in enumerate((("C&W tar", -0.2), ("C&W un", 0.2))):
        ax.bar([i + off for i in range(len(names))], [models[m]["columns"][key] or 0.0 for m in names], width=0.4,
               label=f"{key} (ours)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
    label_axes(ax, "", "mean L2 distortion of successes", f"C&W-L2 distortion ({ctx.scale} scale)")
    ctx.figure(fig, "cw_distortion")

    deviations = [*_common_deviations(ctx, s, "CIFAR-10"), *_bb_deviations(ctx, b)]
    if ctx.scale == "smoke":
        deviations.append(("models", "the nine rows of Table 2", ", ".join(s.models)))
    results = {"n": n1, "n_cw": ctx.n_eval(b.n_cw), "n_spsa": ctx.n_eval(b.n_spsa),
               "n_corrupt": ctx.n_eval(b.n_corrupt), "dataset": dataset, "eps": eps_of, "models": models,
               "paper_numbers": paper}
    return Outcome(sections, results, table2_claims(s, b), deviations, diags)


def table2_claims(s: T1Scale, b: BBScale) -> list[Claim]:
    spsa_cols = [f"SPSA10 {m} eps={e}" for e in s.eps_names for m in ("tar", "un")]

    def cw_larger(results: dict[str, Any]) -> tuple[bool | None, str]:
        c = {m: results["models"][m]["columns"] for m in ("SCE", "MMC-10")}
        pairs = [(k, c["MMC-10"][k], c["SCE"][k]) for k in ("C&W tar", "C&W un")]
        if any(v is None for _, a, x in pairs for v in (a, x)):
            return None, "C&W found no successful example on a model"
        return all(a > x for _, a, x in pairs), "; ".join(f"{k}: MMC-10 {a:.3f} vs SCE {x:.3f}" for k, a, x in pairs)

    def spsa_better(results: dict[str, Any]) -> tuple[bool | None, str]:
        gaps = [(k, _acc(results, "MMC-10", k), _acc(results, "SCE", k)) for k in spsa_cols]
        return all(a >= x + 5 for _, a, x in gaps), "; ".join(f"{k}: MMC-10 {a:.1f} vs SCE {x:.1f}" for k, a, x in gaps)

    def corruptions(results: dict[str, Any]) -> tuple[bool | None, str]:
        gaps = [(k, _acc(results, "MMC-10", k), _acc(results, "SCE", k)) for k in ("Noise", "Rotation")]
        return all(a >= x for _, a, x in gaps), "; ".join(f"{k}: MMC-10 {a:.1f} vs SCE {x:.1f}" for k, a, x in gaps)

    def at_rotation(results: dict[str, Any]) -> tuple[bool | None, str]:
        at = [m for m in results["models"] if m.startswith("AT")]
        plain = [m for m in results["models"] if not m.startswith("AT")]
        if not at:
            return None, "no AT model at this scale"
        worst_plain = min(_acc(results, m, "Rotation") for m in plain)
        best_at = max(_acc(results, m, "Rotation") for m in at)
        return best_at < worst_plain, f"best AT model {best_at:.1f} vs worst non-AT model {worst_plain:.1f}"

    def no_masking(results: dict[str, Any]) -> tuple[bool | None, str]:
        out = []
        for m in results["models"]:
            for e in s.eps_names:
                spsa = min(_acc(results, m, f"SPSA10 {k} eps={e}") for k in ("tar", "un"))
                out.append((f"{m} eps={e}", spsa, _acc(results, m, f"ensemble eps={e} (SPSA points)")))
        bad = [(k, sp, en) for k, sp, en in out if sp < en - 2]
        return not bad, ("every SPSA accuracy >= white-box ensemble - 2 points" if not bad else
                         "; ".join(f"{k}: SPSA {sp:.1f} < ensemble {en:.1f}" for k, sp, en in bad))

    return [
        Claim("It requires much larger C&W distortions to evade MMC-10 than SCE (targeted and untargeted)",
              "l.221, Table 2 Part I", cw_larger),
        Claim("MMC-10 is robust under the gradient-free SPSA: at least 5 points above SCE in all four SPSA columns",
              "l.225, Table 2 Part II", spsa_better),
        Claim("MMC-10 is at least as robust as SCE to Gaussian noise and rotation (one draw)",
              "l.237, Table 2 Part III", corruptions),
        Claim("The AT models are less robust to rotation than the models without AT", "l.237, Table 2 Part III",
              at_rotation),
        Claim("(beyond the paper) No sign of gradient masking: no model is more than 2 points less accurate under "
              "SPSA than under the white-box ensemble on the same points", "our ensemble", no_masking),
    ]


MMC_TABLE2 = Recipe(
    "mmc-table2", "C&W-L2 distortion, SPSA and noise/rotation on the mmc-table1 models (MMC paper Table 2)",
    ("M2", "M3", "M4"), MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, mmc-table1's smoke SCE and MMC-10, C&W 3x10 iterations, SPSA 3 steps x 8 "
                    "samples, 16-32 test points",
           "cpu": "MNIST, mmc-table1's 9 LeNet-5 models (trained there, read from the run cache), C&W 9x100 "
                  "iterations lr 0.05 on 100 points, SPSA10 batch 128 lr 0.032 at eps 0.1/0.2 on 200 points, noise "
                  "sigma 0.05/0.16 and rotation +-30 on 1,000 points (5 draws)",
           "paper": "CIFAR-10 (--data-dir), mmc-table1's 9 ResNet-32 models, C&W 9x1000 lr 0.005, SPSA10 batch 128 "
                    "lr 0.01 at 8/255 and 16/255, noise 0.05, rotation +-30, 10,000 test images"},
    times={"smoke": "measured ~16 s (with its 2 smoke trainings) on a loaded machine",
           "cpu": "estimated ~80 min with --threads 1 after mmc-table1 cpu (measured on MMC-10 on a shared machine: "
                  "C&W 9x100 1.0 s and SPSA batch 128 0.28 s per point; 9 models x ~2.7 C&W x 100 points + ~4.7 "
                  "SPSA x 200 points)",
           "paper": "estimated ~30 GPU hours after mmc-table1 (C&W 9x1000 iterations dominates)"},
    run=_t2_run)


# -------------------------------------------------------------------------------------------- mmc-table3
@dataclass(frozen=True)
class T3Scale:
    batches: tuple[int, ...]
    n: int


T3_SCALES = {"smoke": T3Scale((8, 16, 32), 8), "cpu": T3Scale((128, 1024, 2048), 100),
             "paper": T3Scale((128, 4096, 8192), 10_000)}


def _t3_run(ctx: Context) -> Outcome:
    s, b, t = T1_SCALES[ctx.scale], BB_SCALES[ctx.scale], T3_SCALES[ctx.scale]
    n, n1 = ctx.n_eval(t.n), ctx.n_eval(s.n)
    eps, e_name = s.eps[0], s.eps_names[0]
    objective, options, at = T1_MODELS["MMC-10"]
    run_dir = ctx.train("MMC-10", s.config(objective, options, at))
    t1 = t1_columns(ctx, s, run_dir, n1, f"mmc-table1-{ctx.scale}")
    prefix = f"mmc-table3-{ctx.scale}"
    wanted = [*(_col(st, m, e_name) for st in (10, 50) for m in ("tar", "un")),
              f"PGD50 un CE (non-adaptive) eps={e_name}"]
    pgd = {k: v for k, v in paper_suite(s).items() if k in wanted}
    pgd_res = ctx.evaluate(run_dir, list(pgd.values()), name=f"{prefix}-pgd", n=n)
    cols: dict[str, Any] = {"clean": pgd_res["clean_accuracy"],
                            **{k: a["robust_accuracy"] for k, a in zip(pgd, pgd_res["attacks"])}}
    ensemble = t1["robust"][eps][:n]
    cols["strongest"] = _mean(ensemble)
    sweep: dict[str, dict[str, float]] = {"un": {}, "tar": {}}
    for batch in t.batches:
        for mode in ("un", "tar"):
            res = ctx.evaluate(run_dir, [spsa_spec(b, eps, mode == "tar", samples=batch)],
                               name=f"{prefix}-spsa-{mode}-{batch}", n=n, worst_case=True)
            sweep[mode][str(batch)] = res["worst_case_accuracy"]
            ensemble = _and(ensemble, res["worst_case_robust"])
    cols["strongest incl. SPSA"] = _mean(ensemble)
    small = t.batches[0]
    res = ctx.evaluate(run_dir, [spsa_spec(b, eps, False, samples=small, loss="ce")],
                       name=f"{prefix}-spsa-un-ce-{small}", n=n)
    cols["SPSA un CE (non-adaptive)"] = res["attacks"][0]["robust_accuracy"]

    paper = MMC_PAPER.table("M5")
    lo, hi = MMC_PAPER.lines("M5")
    paper_batches = T3_SCALES["paper"].batches
    rows = []
    for ours_b, paper_b in zip(t.batches, paper_batches):
        rows.append([f"{ours_b} (ours)", pct(sweep["un"][str(ours_b)]), pct(sweep["tar"][str(ours_b)])])
        rows.append([f"{paper_b} (paper)", *(paper[f"batch {paper_b}"][k] for k in ("SPSA10 un", "SPSA10 tar"))])
    ref = [[f"PGD{st} {m}", pct(cols[_col(st, m, e_name)])] for st in (10, 50) for m in ("un", "tar")]
    ref += [["PGD50 un CE (non-adaptive)", pct(cols[f"PGD50 un CE (non-adaptive) eps={e_name}"])],
            [f"SPSA un CE (non-adaptive), batch {small}", pct(cols["SPSA un CE (non-adaptive)"])],
            ["white-box ensemble (mmc-table1, per example)", pct(cols["strongest"])],
            ["**strongest**: ensemble and every SPSA run", pct(cols["strongest incl. SPSA"])]]
    paper_pgd = MMC_PAPER.table("M1")["MMC-10"]
    sections = [
        f"## Table 3: MMC-10 under SPSA with larger batches, ours beside the paper's\n\nThe paper's rows: Table 3 of "
        f"{MMC_PAPER.title} (l.{lo}-{hi}), CIFAR-10, eps 8/255. Ours: mmc-table1's MMC-10 model, eps {eps:g} "
        f"(the paper's 8/255), first {n} test points, SPSA{b.spsa_steps} lr {b.spsa_lr:g} delta {b.spsa_delta:g}, "
        f"adaptive loss. Clean accuracy on these points: {pct(cols['clean'])}%.\n\n"
        + markdown_table(["SPSA batch", "SPSA10 un", "SPSA10 tar"], rows),
        "## Honest columns: the white-box reference, non-adaptive attacks and the strongest on the same points\n\n"
        "The paper compares with Table 1's PGD10 (MMC-10: un "
        f"{paper_pgd[_col(10, 'un', '8/255')]}, tar {paper_pgd[_col(10, 'tar', '8/255')]}; PGD50: un "
        f"{paper_pgd[_col(50, 'un', '8/255')]}, tar {paper_pgd[_col(50, 'tar', '8/255')]}).\n\n"
        + markdown_table(["attack (ours)", "accuracy (%)"], ref)]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for mode, colour in (("un", "tab:blue"), ("tar", "tab:orange")):
        ax.plot(t.batches, [100 * sweep[mode][str(x)] for x in t.batches], marker="o", color=colour,
                label=f"SPSA {mode}")
        ax.axhline(100 * cols[_col(10, mode, e_name)], color=colour, ls="--", lw=1, label=f"PGD10 {mode}")
    ax.axhline(100 * cols["strongest"], color="black", ls=":", lw=1, label="white-box ensemble")
    ax.set_xscale("log", base=2)
    label_axes(ax, "SPSA batch size (model evaluations per step)", "accuracy (%)",
               f"MMC-10 under SPSA at eps={eps:g} ({ctx.scale} scale, {n} points)")
    ctx.figure(fig, "spsa_batch_sweep")
    big = str(t.batches[-1])
    curve = {"paper_eps": [0.0, eps], "paper_attack": [cols["clean"], sweep["un"][big]],
             "eps": [0.0, *t1["curve"]["eps"]], "strongest": [t1["columns"]["clean"], *t1["curve"]["strongest"]]}
    robustness_figure(ctx, {"MMC-10": curve}, f"SPSA{b.spsa_steps} un, batch {big}", "accuracy (%)",
                      f"mmc-table3 robustness curve ({ctx.scale} scale; left: {n} points, right: {n1})")

    def falls(results: dict[str, Any]) -> tuple[bool | None, str]:
        r = results["columns"]
        out, ok = [], True
        for mode in ("un", "tar"):
            accs = [100 * results["sweep"][mode][str(x)] for x in results["batches"]]
            target = 100 * r[_col(10, mode, e_name)]
            ok &= accs[-1] <= accs[0] and abs(accs[-1] - target) <= abs(accs[0] - target)
            out.append(f"{mode}: " + " -> ".join(f"{a:.1f}" for a in accs) + f" (PGD10 {target:.1f})")
        return ok, "; ".join(out)

    def above_ensemble(results: dict[str, Any]) -> tuple[bool | None, str]:
        big_acc = min(100 * results["sweep"][m][str(results["batches"][-1])] for m in ("un", "tar"))
        ens = 100 * results["columns"]["strongest"]
        return big_acc >= ens - 2, f"largest-batch SPSA {big_acc:.1f} vs white-box ensemble {ens:.1f}"

    claims = [
        Claim("SPSA accuracy falls towards PGD10 accuracy as its batch grows (un and tar: the largest batch is no "
              "higher than the smallest and closer to PGD10)", "l.225, Table 3", falls),
        Claim("(beyond the paper) Even the largest-batch SPSA stays above the white-box ensemble (within 2 points): "
              "no gradient masking", "our ensemble", above_ensemble),
    ]
    deviations = [*_common_deviations(ctx, s, "CIFAR-10"), *_bb_deviations(ctx, b)[1:2]]
    if ctx.scale != "paper":
        deviations.append(("SPSA batches", "128, 4096, 8192 (l.225)", ", ".join(map(str, t.batches))
                           + f" on the first {n} test points (8192 evaluations x 10 steps per point is too slow here)"))
    diags = {"MMC-10": _diag(ctx, s, run_dir)}
    results = {"n": n, "eps": eps, "batches": list(t.batches), "sweep": sweep, "columns": cols, "curve": curve,
               "paper_numbers": paper}
    return Outcome(sections, results, claims, deviations, diags)


MMC_TABLE3 = Recipe(
    "mmc-table3", "MMC-10 under SPSA with growing batch size vs white-box PGD (MMC paper Table 3)", ("M5",),
    MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, mmc-table1's smoke MMC-10, SPSA batches 8/16/32 on 8 points",
           "cpu": "MNIST, mmc-table1's MMC-10 (run cache), SPSA10 lr 0.032 at eps 0.1 with batches 128/1024/2048 "
                  "on 100 points, PGD10/50 on the same points",
           "paper": "CIFAR-10 (--data-dir), mmc-table1's MMC-10 ResNet-32, SPSA10 batches 128/4096/8192 at 8/255, "
                    "10,000 test images"},
    times={"smoke": "measured ~5 s after mmc-table2 smoke",
           "cpu": "estimated ~30 min with --threads 1 after mmc-table1 cpu (SPSA cost grows with the batch: "
                  "measured on MMC-10 0.28 s per point at batch 128, 2.5 s at 1024; 100 points x 2 modes)",
           "paper": "estimated ~15 GPU hours after mmc-table1"},
    run=_t3_run)


# -------------------------------------------------------------------------------------------- mmc-table4
#: Table 4's rows -> mmc-table1's models
T4_MODELS = {"SCE": "SCE", "Center": "Center loss", "MMLDA": "MMLDA", "L-GM": "L-GM", "MMC-10": "MMC-10"}


def _cifar100_config(objective: str, options: dict[str, Any], at: bool | None) -> TrainConfig:
    # Table 4 (l.241): the CIFAR-10 recipe of mmc-table1's paper scale on CIFAR-100
    return replace(_cifar_config(objective, options, at), dataset="cifar100")


T4_SCALES = {"smoke": T1_SCALES["smoke"],
             "paper": replace(T1_SCALES["paper"], config=_cifar100_config, models=tuple(T4_MODELS.values()))}


def _t4_run(ctx: Context) -> Outcome:
    s, b = T4_SCALES[ctx.scale], BB_SCALES[ctx.scale]
    n1 = ctx.n_eval(s.n)
    prefix = f"mmc-table4-{ctx.scale}"
    e_name = s.eps_names[0]
    models: dict[str, dict[str, Any]] = {}
    diags: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    rows_of = {v: k for k, v in T4_MODELS.items()}
    for model in (m for m in s.models if m in rows_of):
        objective, options, at = T1_MODELS[model]
        run_dir = ctx.train(model, s.config(objective, options, at))
        t1 = t1_columns(ctx, s, run_dir, n1, prefix)
        adaptive = _adaptive_matters(objective)
        cols = dict(t1["columns"])
        cols.update(cw_columns(ctx, b, run_dir, prefix, adaptive))
        cols.update(spsa_columns(ctx, b, s, run_dir, prefix, t1["robust"], s.eps[:1], adaptive))
        curves[rows_of[model]] = t1["curve"]
        models[rows_of[model]] = {"run": str(run_dir), "columns": cols, "curve": t1["curve"]}
        diags[rows_of[model]] = _diag(ctx, s, run_dir)
    paper = MMC_PAPER.table("M6")
    lo, hi = MMC_PAPER.lines("M6")
    pgd_cols = [_col(10, m, e_name) for m in ("tar", "un")]
    spsa_cols = [f"SPSA10 {m} eps={e_name}" for m in ("tar", "un")]
    header = ["model", "clean", *pgd_cols, *spsa_cols, "C&W tar (L2)", "C&W un (L2)"]
    rows = []
    for row, info in models.items():
        c = info["columns"]
        rows.append([f"{row} (ours)", pct(c["clean"]), *(pct(c[k]) for k in (*pgd_cols, *spsa_cols)),
                     _num(c["C&W tar"], 3), _num(c["C&W un"], 3)])
        p = paper[row]
        rows.append([f"{row} (paper)", p["clean"], *(p[k.replace(f"eps={e_name}", "eps=8/255")]
                                                      for k in (*pgd_cols, *spsa_cols)), p["C&W tar"], p["C&W un"]])
    honest = [[row, pct(c["clean"]), pct(min(c[k] for k in pgd_cols)), pct(c[f"PGD50 un CE (non-adaptive) eps={e_name}"]),
               pct(c[f"strongest eps={e_name}"]), pct(c[f"strongest incl. SPSA eps={e_name}"]),
               _cw_cell(c, "C&W un"), _cw_cell(c, "C&W un margin (non-adaptive)")
               if "C&W un margin (non-adaptive)" in c else "= adaptive (SCE)"]
              for row, c in ((r, i["columns"]) for r, i in models.items())]
    dataset = _models_dataset(s)
    sections = [
        f"## Table 4: CIFAR-100, ours beside the paper's\n\nThe paper's rows: Table 4 of {MMC_PAPER.title} "
        f"(l.{lo}-{hi}), CIFAR-100, ResNet-32, eps 8/255. Ours: {dataset}, first {n1} test points for PGD, "
        f"{ctx.n_eval(b.n_spsa)} for SPSA, {ctx.n_eval(b.n_cw)} for C&W (mean L2 distortion of the successes).\n\n"
        + markdown_table(header, rows),
        "## Honest columns\n\n*best paper PGD*: the lower of PGD10 tar/un; *non-adaptive*: PGD-50 / C&W on the plain "
        "logits; *strongest*: the per-example worst case of mmc-table1's ensemble, and with both SPSA runs added.\n\n"
        + markdown_table(["model", "clean", "best paper PGD", "non-adaptive PGD50 un", "**strongest**",
                          "**strongest** incl. SPSA (SPSA points)", "C&W un adaptive (success %)",
                          "C&W un non-adaptive (success %)"], honest)]
    robustness_figure(ctx, curves, "adaptive PGD-50 untargeted", f"accuracy (%) on {n1} {dataset} test images",
                      f"mmc-table4 robustness curves ({ctx.scale} scale)")

    def better(column: str, label: str) -> Claim:
        def check(results: dict[str, Any]) -> tuple[bool | None, str]:
            a, x = _acc(results, "MMC-10", column), _acc(results, "SCE", column)
            return a >= x + 5, f"{column}: MMC-10 {a:.1f} vs SCE {x:.1f}"
        return Claim(f"MMC-10 improves robustness over SCE on CIFAR-100 by at least 5 points ({label})",
                     "l.268, Table 4", check)

    def clean_kept(results: dict[str, Any]) -> tuple[bool | None, str]:
        a, x = _acc(results, "MMC-10", "clean"), _acc(results, "SCE", "clean")
        return a >= x - 2, f"clean: MMC-10 {a:.1f} vs SCE {x:.1f}"

    claims = [better(_col(10, "un", e_name), "PGD10 un"), better(f"SPSA10 un eps={e_name}", "SPSA10 un"),
              better(f"strongest eps={e_name}", "beyond the paper: the strongest attack"),
              Claim("MMC keeps the clean accuracy of SCE (within 2 points)", "l.268, Table 4", clean_kept)]
    deviations = _common_deviations(ctx, s, "CIFAR-100 (100 classes)") + _bb_deviations(ctx, b)[:2]
    if ctx.scale == "smoke":
        deviations += [("classes", "100", "10 (the synthetic set)"),
                       ("models", "SCE, Center, MMLDA, L-GM, MMC-10", ", ".join(models))]
    results = {"n": n1, "dataset": dataset, "models": models, "paper_numbers": paper}
    return Outcome(sections, results, claims, deviations, diags)


MMC_TABLE4 = Recipe(
    "mmc-table4", "CIFAR-100: clean, PGD, SPSA and C&W on SCE, Center loss, MMLDA, L-GM and MMC-10 (MMC paper "
    "Table 4)", ("M6",), MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data (10 classes; no CIFAR-100 analogue on MNIST), mmc-table1's smoke "
                    "SCE and MMC-10, reduced attacks",
           "paper": "CIFAR-100 (--data-dir with cifar-100-python), ResNet-32, 200 epochs, 5 models, PGD10 / SPSA10 "
                    "at 8/255, C&W 9x1000, 10,000 test images"},
    times={"smoke": "measured ~6 s after mmc-table2 smoke", "paper": "estimated ~45 GPU hours (5 x 3.6 h training, C&W and SPSA)"},
    run=_t4_run, default_scale="paper")


# -------------------------------------------------------------------------------------------- mmc-table5
@dataclass(frozen=True)
class T5Scale:
    """``mmc-table5`` at one scale: the attacks (a :class:`T1Scale`), the two depths and the datasets."""

    attacks: T1Scale
    depths: tuple[tuple[str, int, str], ...]    # (our label, ResNet-v2 n, the paper's depth it stands for)
    datasets: tuple[tuple[str, str], ...]       # (our dataset, the paper's dataset label)
    config: Callable[[str, str, dict[str, Any], int], TrainConfig]


def _t5_mnist(dataset: str, objective: str, options: dict[str, Any], n: int) -> TrainConfig:
    # cpu: ResNet-v2 of width 8 on 20,000 MNIST images, 3 epochs (measured ~72 s / ~117 s per epoch for
    # ResNet-8 / ResNet-20 with one thread on the shared machine); the rest as mmc-table1's cpu scale
    return replace(mnist_config(3, 3, 20_000)(objective, options, None), model="resnet",
                   model_options={"n": n, "width": 8, "feature_dim": 256})


def _t5_synthetic(dataset: str, objective: str, options: dict[str, Any], n: int) -> TrainConfig:
    # width 8, not 4: with channels-last weights (--channels-last) a 4-channel ResNet aborts inside oneDNN
    return replace(_synthetic_config(objective, options, None), model="resnet", train_limit=256,
                   model_options={"n": n, "width": 8, "feature_dim": 32})


def _t5_cifar(dataset: str, objective: str, options: dict[str, Any], n: int) -> TrainConfig:
    # the MMC paper l.268: ResNet-110 = eighteen core blocks per stage (n = 18); ResNet-32: n = 5 (mmc-table1)
    return replace(_cifar_config(objective, options, None), dataset=dataset,
                   model_options={"n": n, "feature_dim": 256})


_T5_OBJECTIVES = {"SCE": ("sce", {}), "MMC": ("mmc", {"c_mm": 10.0})}
T5_SCALES = {
    "smoke": T5Scale(replace(T1_SCALES["smoke"], convergence_steps=(), n=16, diag_n=16), (("ResNet-8", 1, "Res.32"),
                                                                              ("ResNet-14", 2, "Res.110")),
                     (("synthetic", "CIFAR-10"),), _t5_synthetic),
    "cpu": T5Scale(replace(T1_SCALES["cpu"], n=500, curve_eps=(0.05, 0.1, 0.2, 0.3), convergence_steps=(),
                           apgd_steps=50, mt_steps=30, mt_k=3, margin_restarts=1),
                   (("ResNet-8", 1, "Res.32"), ("ResNet-20", 3, "Res.110")), (("mnist", "CIFAR-10"),), _t5_mnist),
    "paper": T5Scale(replace(T1_SCALES["paper"], convergence_steps=()), (("Res.32", 5, "Res.32"),
                                                                         ("Res.110", 18, "Res.110")),
                     (("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")), _t5_cifar),
}


def _t5_run(ctx: Context) -> Outcome:
    t = T5_SCALES[ctx.scale]
    s = t.attacks
    n = ctx.n_eval(s.n)
    prefix = f"mmc-table5-{ctx.scale}"
    models: dict[str, dict[str, Any]] = {}
    diags: dict[str, dict[str, Any]] = {}
    for dataset, paper_dataset in t.datasets:
        for obj_label, (objective, options) in _T5_OBJECTIVES.items():
            for depth, depth_n, paper_depth in t.depths:
                row = f"{dataset} {obj_label} ({depth})"
                run_dir = ctx.train(row, t.config(dataset, objective, options, depth_n))
                info = t1_columns(ctx, s, run_dir, n, prefix)
                del info["robust"]
                info["paper_row"] = f"{paper_dataset} {obj_label} ({paper_depth})"
                info["objective"], info["depth"], info["dataset"] = obj_label, depth, dataset
                models[row] = info
                x, y = datasets.load(dataset, "test", ctx.data_dir)
                diags[row] = ctx.diagnose(run_dir, x[:s.diag_n], y[:s.diag_n], eps=s.eps[0], **dict(s.diag))
    paper = MMC_PAPER.table("M7")
    lo, hi = MMC_PAPER.lines("M7")
    cols = [c for c in paper["CIFAR-10 SCE (Res.32)"] if c != "clean"]
    eps_of = dict(zip(s.eps_names, s.eps))
    header = ["model", "clean", *(c.replace(f"eps={e}", f"eps={e} (ours {eps_of[e]:.4g})")
                                  for c in cols for e in s.eps_names if f"eps={e}" in c)]
    rows = []
    for row, info in models.items():
        c = info["columns"]
        rows.append([f"{row} (ours)", pct(c["clean"]), *(pct(c[k]) for k in cols)])
        rows.append([f"{info['paper_row']} (paper)", *(paper[info["paper_row"]][k] for k in ("clean", *cols))])
    shown = {i["paper_row"] for i in models.values()}
    rows += [[f"{r} (paper)", *(paper[r][k] for k in ("clean", *cols))] for r in paper if r not in shown]
    honest = [[row, *(pct(min(i["columns"][_col(st, m, e)] for st in (10, 50) for m in ("tar", "un")))
                      for e in s.eps_names),
               *(pct(i["columns"][f"PGD50 un CE (non-adaptive) eps={e}"]) for e in s.eps_names),
               *(pct(i["columns"][f"strongest eps={e}"]) for e in s.eps_names)] for row, i in models.items()]
    sections = [
        f"## Table 5: a deeper backbone, ours beside the paper's\n\nThe paper's rows: Table 5 of {MMC_PAPER.title} "
        f"(l.{lo}-{hi}): ResNet-32 vs ResNet-110. Ours: "
        + ", ".join(f"{d} (ResNet-v2 n={k}) for the paper's {p}" for d, k, p in t.depths)
        + f"; first {n} test points; attacks as mmc-table1 (adaptive, step {s.step:g}). The paper's rows that this "
        "scale does not train are listed after ours.\n\n" + markdown_table(header, rows),
        "## Honest columns\n\n" + markdown_table(
            ["model", *(f"best paper attack eps={e}" for e in s.eps_names),
             *(f"non-adaptive PGD50 un eps={e}" for e in s.eps_names),
             *(f"**strongest** eps={e}" for e in s.eps_names)], honest)]
    robustness_figure(ctx, {r: i["curve"] for r, i in models.items()}, "adaptive PGD-50 untargeted",
                      f"accuracy (%) on {n} test images", f"mmc-table5 robustness curves ({ctx.scale} scale)")
    shallow, deep = t.depths[0][0], t.depths[-1][0]

    def deeper(objective: str, column: str) -> Callable[[dict[str, Any]], tuple[bool | None, str]]:
        def check(results: dict[str, Any]) -> tuple[bool | None, str]:
            out, ok = [], True
            for dataset, _ in t.datasets:
                cols_ = [column.format(e) for e in s.eps_names]
                for c in cols_:
                    a = _acc(results, f"{dataset} {objective} ({deep})", c)
                    x = _acc(results, f"{dataset} {objective} ({shallow})", c)
                    ok &= a > x if objective == "MMC" else abs(a - x) <= 5
                    out.append(f"{dataset} {c}: {deep} {a:.1f} vs {shallow} {x:.1f}")
            return ok, "; ".join(out)
        return check

    claims = [
        Claim(f"MMC benefits from depth: the deeper MMC model ({deep}) is more robust than the shallower ({shallow}) "
              "under PGD10 un at both eps", "l.268, Table 5", deeper("MMC", "PGD10 un eps={}")),
        Claim("(beyond the paper) The same under the strongest attack", "our ensemble",
              deeper("MMC", "strongest eps={}")),
        Claim("SCE is comparably sensitive for both depths: its PGD10 un accuracy changes by at most 5 points",
              "l.268, Table 5", deeper("SCE", "PGD10 un eps={}")),
    ]

    def mmc_beats(results: dict[str, Any]) -> tuple[bool | None, str]:
        out, ok = [], True
        for dataset, _ in t.datasets:
            for depth, _, _ in t.depths:
                for e in s.eps_names:
                    c = f"PGD10 un eps={e}"
                    a = _acc(results, f"{dataset} MMC ({depth})", c)
                    x = _acc(results, f"{dataset} SCE ({depth})", c)
                    ok &= a >= x + 5
                    out.append(f"{dataset} {depth} {c}: MMC {a:.1f} vs SCE {x:.1f}")
        return ok, "; ".join(out)

    claims.append(Claim("At each depth MMC is at least 5 points more robust than SCE (PGD10 un)", "Table 5",
                        mmc_beats))
    deviations: list[tuple[str, str, str]] = []
    if ctx.scale != "paper":
        cfg = t.config(t.datasets[0][0], "sce", {}, t.depths[0][1])
        deviations = [
            ("dataset", "CIFAR-10 and CIFAR-100", f"{t.datasets[0][0]} only" + (
                f", {cfg.train_limit} training images" if cfg.train_limit else "")),
            ("backbones", "ResNet-32 (n=5) and ResNet-110 (n=18), width 16, 256-d features",
             " and ".join(f"{d} (n={k})" for d, k, _ in t.depths) + f", width {cfg.model_options['width']}, "
             f"{cfg.model_options['feature_dim']}-d features"),
            ("epochs", "200, lr x0.1 at 100 and 150", f"{cfg.epochs}, constant lr {cfg.lr:g}"),
            ("eps", "8/255 and 16/255, step 2/255", f"{s.eps[0]:g} and {s.eps[1]:g}, step {s.step:g}"),
            ("test points", "all 10,000", str(n)),
            ("ensemble", "-", f"APGD {s.apgd_steps} steps, margin PGD x{s.margin_restarts}, multi-target "
                              f"{s.mt_k} targets x {s.mt_steps} steps"),
        ]
    results = {"n": n, "eps": eps_of, "models": models, "paper_numbers": paper}
    return Outcome(sections, results, claims, deviations, diags)


MMC_TABLE5 = Recipe(
    "mmc-table5", "a deeper backbone: SCE and MMC-10 on a shallow and a deep ResNet-v2 (MMC paper Table 5)", ("M7",),
    MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, ResNet-v2 n=1 vs n=2 (width 8), SCE and MMC-10, 1 epoch on 256 images, "
                    "16 test points",
           "cpu": "MNIST, ResNet-8 vs ResNet-20 (ResNet-v2 n=1/3, width 8), SCE and MMC-10, 3 epochs on 20,000 "
                  "images, PGD10/50 tar/un at eps 0.1/0.2 and a reduced ensemble (curve at 0.05-0.3) on 500 test points",
           "paper": "CIFAR-10 and CIFAR-100 (--data-dir), ResNet-32 vs ResNet-110, SCE and MMC-10, 200 epochs, "
                    "10,000 test images"},
    times={"smoke": "measured ~16 s on a loaded machine",
           "cpu": "estimated ~45 min with --threads 1 (measured on a shared machine: 72 s / 117 s per 20k-image "
                  "epoch and 0.33 / 1.1 ms per point and PGD step for ResNet-8 / ResNet-20; training ~19 min, "
                  "attacks ~25 min)",
           "paper": "estimated ~100 GPU hours (8 models; ResNet-110 ~3.5x ResNet-32)"},
    run=_t5_run)

RECIPES = (MMC_TABLE2, MMC_TABLE3, MMC_TABLE4, MMC_TABLE5)
