"""Recipes of the MMC paper's figures: ``mmc-fig3a`` (M8), ``mmc-fig3b`` (M9) and ``mmc-fig4`` (M10);
and :func:`transfer_command`, the transfer matrix of any run folders (``robustloss transfer``).

The paper gives no numbers for these figures (their images are absent from its
text); what it states is drawn and checked from our numbers:

* Fig. 3(a) (l.158, l.151, l.176, l.197): clean test error against training
  time for SCE, MMC and 10-step targeted PGD adversarial training ("AT refers to
  AT10 tar", l.158).  MMC "induces faster convergence rate and requires little
  extra computation compared to the SCE loss", AT is expensive and costs clean
  accuracy.  We plot the validation error logged after every epoch against the
  cumulative training time (``log.jsonl``) and measure the final test error.
* Fig. 3(b) (l.158, l.201): a network with a two-dimensional feature layer
  trained with MMC on MNIST; PGD with eps 0.3, step 0.01, 50 iterations; two
  panels, one per randomly selected clean input (a black star), over the
  features of all 10,000 test images, showing the adaptive attacks
  (``-L_MMC(z, y)`` untargeted, ``L_MMC(z, y_t)`` targeted, App. B.4) and the
  non-adaptive one (SCE-type loss on the logits).  "The adaptive attacks are
  indeed much more efficient than the non-adaptive one."
* Fig. 4 (l.195, l.225): transfer attacks, PGD and MIM, untargeted only, crafted
  on a substitute model and evaluated on a target model, on CIFAR-10; "AT refers
  to AT10 tar".  Epsilon, steps and the MIM decay are not stated.

Figures 3(a) and 4 use the models of ``mmc-table1`` (SCE, MMC-10 and both
targeted-AT variants), built with the same :class:`TrainConfig` as that recipe
(:data:`robustloss.reproduce.mmc.T1_SCALES`), so the shared run cache trains each
model once for all three recipes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustloss import datasets
from robustloss.attacks.pgd import PGD
from robustloss.attacks.transfer import TRANSFER_ATTACKS
from robustloss.classifier import Classifier, predict
from robustloss.device import resolve_device
from robustloss.errors import UserError, check_int, unknown_choice
from robustloss.evaluation.report import markdown_table
from robustloss.evaluation.suite import AttackSpec, parse_spec, with_default_eps
from robustloss.evaluation.transfer import transfer_matrix
from robustloss.io import atomic_write, atomic_write_json, atomic_write_text
from robustloss.reproduce.framework import Claim, Context, Outcome, Recipe, label_axes, pct, pyplot
from robustloss.reproduce.mmc import T1_MODELS, T1_SCALES, T1Scale, strong_suite
from robustloss.reproduce.papers.mmc_paper import MMC_PAPER
from robustloss.runs import load_run, read_config
from robustloss.training.config import TrainConfig
from robustloss.training.timing import epoch_times

#: the models of Fig. 3(a) and Fig. 4: SCE, MMC-10 and AT10 tar of both ("AT refers to AT10 tar", l.158, l.195)
FIG_MODELS = ("SCE", "MMC-10", "AT10 tar (SCE)", "AT10 tar (MMC-10)")


def table1_runs(ctx: Context, rows: Sequence[str] = FIG_MODELS) -> dict[str, Path]:
    """The run folders of ``rows`` with ``mmc-table1``'s configs at ``ctx.scale`` (trained first if missing)."""
    s = T1_SCALES[ctx.scale]
    return {row: ctx.train(row, s.config(*T1_MODELS[row])) for row in rows}


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of ``run_dir/log.jsonl`` (epoch, time_s, train/val metrics), in epoch order."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no training log (log.jsonl)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(rows, key=lambda r: int(r["epoch"]))


def _test_set(dataset: str, data_dir: str | None, n: int) -> tuple[Tensor, Tensor]:
    x, y = datasets.load(dataset, "test", data_dir)
    return x[:n], y[:n]


def _accuracy(model: torch.nn.Module, x: Tensor, y: Tensor, device: torch.device) -> float:
    return float((predict(model, x, 500, device) == y.cpu()).float().mean())


# --------------------------------------------------------------------------------------------- mmc-fig3a
#: test points for the final test error, per scale (cpu/paper: the whole test set)
F3A_N = {"smoke": 200, "cpu": 10_000, "paper": 10_000}


def _time_to_reach(times: list[float], errors: list[float], level: float) -> float:
    """The first cumulative training time at which the error is at most ``level`` (``inf``: never)."""
    return next((t for t, e in zip(times, errors) if e <= level + 1e-12), float("inf"))


#: side-by-side timing per scale: (training images per timed epoch, timed repetitions)
F3A_TIMING = {"smoke": (512, 3), "cpu": (2_000, 3), "paper": (500, 3)}


def fig3a_claims() -> list[Claim]:
    def faster(results: dict[str, Any]) -> tuple[bool | None, str]:
        m, s = results["models"]["MMC-10"], results["models"]["SCE"]
        level = max(m["val_error"][-1], s["val_error"][-1])
        tm = _time_to_reach(m["time_s"], m["val_error"], level)
        ts = _time_to_reach(s["time_s"], s["val_error"], level)
        return tm <= ts, (f"time to reach {100 * level:.2f}% validation error (the larger final error), epochs x "
                          f"side-by-side epoch time: MMC-10 {tm:.0f} s, SCE {ts:.0f} s")

    def cheap(results: dict[str, Any]) -> tuple[bool | None, str]:
        r = results["timing"]["ratios"]["MMC-10 / SCE"]
        return r["median"] <= 1.25, (f"MMC-10 / SCE epoch time {r['median']:.2f} (per repetition "
                                     f"{r['min']:.2f}-{r['max']:.2f}), timed side by side")

    def at_expensive(results: dict[str, Any]) -> tuple[bool | None, str]:
        ratios = {k: results["timing"]["ratios"][k]["median"] for k in ("AT10 tar (SCE) / SCE",
                                                                        "AT10 tar (MMC-10) / MMC-10")}
        return all(r >= 5 for r in ratios.values()), ", ".join(f"{k} {r:.1f}" for k, r in ratios.items())

    def at_costs_clean(results: dict[str, Any]) -> tuple[bool | None, str]:
        pairs = [(at, base) for at, base in (("AT10 tar (SCE)", "SCE"), ("AT10 tar (MMC-10)", "MMC-10"))]
        err = {k: v["test_error"] for k, v in results["models"].items()}
        return all(err[at] > err[base] for at, base in pairs), ", ".join(
            f"{at} {100 * err[at]:.2f}% vs {base} {100 * err[base]:.2f}%" for at, base in pairs)

    return [
        Claim("MMC converges faster than SCE: MMC-10 reaches the larger of the two final validation errors in no "
              "more training time than SCE", "l.151, l.176, Fig. 3(a)", faster),
        Claim("MMC requires little extra computation compared to SCE: its epoch time, timed side by side, is at "
              "most 1.25x SCE's", "l.176, Fig. 3(a)", cheap),
        Claim("AT is expensive: an AT10 epoch takes at least 5x the epoch of its objective without AT",
              "l.176-l.197, Fig. 3(a)", at_expensive),
        Claim("AT costs clean accuracy: each AT10 tar model has a higher final test error than its objective "
              "without AT", "l.197, Fig. 3(a)", at_costs_clean),
    ]


#: the timing ratios of Fig. 3(a)'s claims, (numerator, denominator)
F3A_RATIOS = (("MMC-10", "SCE"), ("AT10 tar (SCE)", "SCE"), ("AT10 tar (MMC-10)", "MMC-10"))


def _fig3a_run(ctx: Context) -> Outcome:
    plt = pyplot()
    s = T1_SCALES[ctx.scale]
    runs = table1_runs(ctx)
    configs = {row: ctx.config(s.config(*T1_MODELS[row])) for row in runs}
    dataset = configs["SCE"].dataset
    x, y = _test_set(dataset, ctx.data_dir, ctx.n_eval(F3A_N[ctx.scale]))
    device = resolve_device(ctx.device)

    # the training cost of each model, timed side by side in this process (the logs' times are the loads the
    # runs were trained under); an epoch's cost is the measured time per image x the run's training images
    images, reps = F3A_TIMING[ctx.scale]
    cfg = configs["SCE"]
    x_train, y_train = datasets.load(dataset, "train", cfg.data_dir)
    ctx.log(f"timing {len(configs)} models side by side: {reps} epochs of {images} training images each")
    timing = epoch_times(configs, x_train[:images], y_train[:images], reps=reps, device=ctx.device)
    models: dict[str, dict[str, Any]] = {}
    for row, run_dir in runs.items():
        log = read_log(run_dir)
        logged: list[float] = []
        for r in log:
            logged.append((logged[-1] if logged else 0.0) + float(r["time_s"]))
        n_train = min(len(x_train), configs[row].train_limit or len(x_train))
        epoch_s = timing.per_image(row) * n_train
        model = load_run(run_dir, device=ctx.device)
        models[row] = {"run": str(run_dir), "epochs": [int(r["epoch"]) for r in log],
                       "time_s": [epoch_s * int(r["epoch"]) for r in log], "epoch_time_s": epoch_s,
                       "logged_time_s": logged, "logged_epoch_time_s": logged[-1] / len(logged),
                       "val_error": [1.0 - float(r["val_acc"]) for r in log],
                       "test_error": 1.0 - _accuracy(model, x, y, device)}
    ratios = {}
    for num, den in F3A_RATIOS:
        lo, hi = timing.ratio_range(num, den)
        ratios[f"{num} / {den}"] = {"median": timing.ratio(num, den), "min": lo, "max": hi,
                                    "wall": timing.ratio(num, den, "wall")}

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = plt.get_cmap("tab10")
    for i, (row, m) in enumerate(models.items()):
        ax.plot(m["time_s"], [100 * e for e in m["val_error"]], marker="o", ms=3, color=colours(i),
                ls="--" if row.startswith("AT") else "-", label=f"{row} (validation, per epoch)")
        ax.plot([m["time_s"][-1]], [100 * m["test_error"]], marker="*", ms=10, color=colours(i), ls="none")
    ax.plot([], [], marker="*", ms=10, color="grey", ls="none", label="final test error")
    ax.set_xscale("log")
    label_axes(ax, "training time (CPU s: epochs x the epoch time timed side by side)", "clean error rate (%)",
               f"clean error vs training time ({dataset}, {ctx.scale} scale)")
    ctx.figure(fig, "error_vs_time")

    rows = [[row, str(len(m["epochs"])), f"{m['epoch_time_s']:.1f}", f"{m['time_s'][-1]:.0f}",
             f"{m['logged_epoch_time_s']:.1f}", f"{100 * m['val_error'][0]:.2f}", f"{100 * m['val_error'][-1]:.2f}",
             f"{100 * m['test_error']:.2f}"] for row, m in models.items()]
    sections = [
        "## The paper's figure\n\nFig. 3(a) of the MMC paper (caption l.158): test error rates on clean CIFAR-10 "
        "images w.r.t. training time, ResNet-32, \"AT refers to 10-steps targeted PGD adversarial training\". The "
        "paper prints no numbers for it and its image is absent from the paper's text; its claims (l.151, l.176, "
        "l.197) are checked below.\n",
        f"## Ours: clean error and training time\n\nPer-epoch validation error (the held-out validation split, "
        f"logged after every epoch) of mmc-table1's models (the same run-cache folders); final test error on "
        f"{len(x)} test images. Training time: each model's training step (its objective, its AT) timed side by "
        f"side in this run - {reps} epoch(s) of the same {images} training images per model, the order "
        f"alternating, CPU time - scaled to the run's training set; the time axis is epochs x that epoch time. "
        f"The logged epoch time is the wall time of the run's epochs when it was trained (under whatever else "
        f"the machine did then: not comparable between models).\n\n"
        + markdown_table(["model", "epochs", "epoch time, side by side (CPU s)", "total training time (CPU s)",
                          "logged epoch time (wall s)", "val error after epoch 1 (%)", "final val error (%)",
                          "final test error (%)"], rows)
        + "\nRatios of the side-by-side epoch times (median over the repetitions, their range, and the wall-time "
          "ratio):\n\n"
        + markdown_table(["ratio", "median (CPU)", "per repetition", "wall"],
                         [[k, f"{r['median']:.2f}", f"{r['min']:.2f}-{r['max']:.2f}", f"{r['wall']:.2f}"]
                          for k, r in ratios.items()])]
    sce, at_cfg = configs["SCE"], configs["AT10 tar (SCE)"]
    deviations = [
        ("error curve", "test error on clean images during training", "validation error after each epoch (test "
         "error is measured once, at the end)"),
        ("training time", "the paper's GPU (unit not stated)", "CPU seconds on this 2-core machine, each model's "
         "epoch timed side by side in one process"),
    ]
    if ctx.scale != "paper":
        assert at_cfg.adversarial is not None
        deviations = [
            ("dataset", "CIFAR-10", dataset + (f" ({sce.train_limit} training images)" if sce.train_limit else "")),
            ("backbone", "ResNet-32", "LeNet-5"),
            ("epochs", "200 (l.174)", f"{sce.epochs} (standard), {at_cfg.epochs} (AT)"),
            ("AT", "10-step targeted PGD, eps 8/255", f"10-step targeted PGD, eps {at_cfg.adversarial.eps:g}, step "
             f"{at_cfg.adversarial.step_size:g}"), *deviations]
    results = {"dataset": dataset, "n_test": len(x), "models": models,
               "timing": {**timing.as_dict(), "ratios": ratios}}
    return Outcome(sections, results, fig3a_claims(), deviations)


MMC_FIG3A = Recipe(
    "mmc-fig3a", "clean error vs training time, SCE / MMC-10 / AT10 tar (MMC paper Fig. 3(a))", ("M8",), MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, LeNet-5, mmc-table1's smoke configs of SCE, MMC-10 and AT10 tar of both "
                    "(1 epoch on 512 images), 200 test points",
           "cpu": "MNIST, LeNet-5, mmc-table1's cpu models SCE, MMC-10 (10 epochs) and AT10 tar of both (3 epochs), "
                  "all 10,000 test images",
           "paper": "CIFAR-10 (--data-dir), ResNet-32, mmc-table1's paper models (200 epochs)"},
    times={"smoke": "measured ~10 s", "cpu": "measured 55 s once mmc-table1 --scale cpu has trained its models (else their "
                                             "training: ~35 min at mmc-table1's measured 23 s per epoch and 280 s per "
                                             "AT epoch)",
           "paper": "no extra time after mmc-table1 --scale paper (its four models: ~58 GPU hours)"},
    run=_fig3a_run)


# --------------------------------------------------------------------------------------------- mmc-fig3b
#: the paper's attack of Fig. 3(b) (l.158): eps 0.3, step 0.01, 50 iterations
F3B_EPS, F3B_STEP, F3B_STEPS = 0.3, 0.01, 50


@dataclass(frozen=True)
class F3bScale:
    """What ``mmc-fig3b`` does at one scale."""

    config: TrainConfig
    n: int                          # test points for the accuracies
    steps_grid: tuple[int, ...]     # PGD step counts of the efficiency curve (the last is the paper's 50)
    strong: T1Scale                 # the worst-case ensemble's budgets (mmc-table1's, at the paper's step)


def _f3b_config(dataset: str, model: str, options: dict[str, Any], epochs: int, batch: int,
                train_limit: int | None) -> TrainConfig:
    # MMC-10 (C_MM = 10, the paper's choice, Sec. 4.1) with a 2-d feature layer (l.201); momentum SGD, lr 0.01 (l.174)
    return TrainConfig(dataset=dataset, model=model, model_options={**options, "feature_dim": 2}, objective="mmc",
                       objective_options={"c_mm": 10.0}, epochs=epochs, batch_size=batch, lr=0.01, momentum=0.9,
                       seed=0, train_limit=train_limit)


F3B_SCALES: dict[str, F3bScale] = {
    "smoke": F3bScale(_f3b_config("synthetic", "lenet5", {}, 1, 128, 512), 32, (2, 5),
                      replace(T1_SCALES["smoke"], step=F3B_STEP)),
    "cpu": F3bScale(_f3b_config("mnist", "lenet5", {}, 10, 128, None), 1000, (5, 10, 20, 50),
                    replace(T1_SCALES["cpu"], step=F3B_STEP)),
    # the paper's MNIST recipe: ResNet-32, 40 epochs (l.174); batch 50 as mmc-table1's paper scale
    "paper": F3bScale(_f3b_config("mnist", "resnet", {"n": 5}, 40, 50, None), 10_000, (5, 10, 20, 50),
                      replace(T1_SCALES["paper"], step=F3B_STEP)),
}

#: the four attacks of the trajectories: (label, loss, targeted); the paper's adaptive objectives (l.201, App. B.4)
#: and the non-adaptive SCE-type loss (cross-entropy on the logits)
F3B_ATTACKS = (("non-adaptive (CE), untargeted", "ce", False), ("adaptive, untargeted", "adaptive", False),
               ("non-adaptive (CE), targeted", "ce", True), ("adaptive, targeted", "adaptive", True))


class TracingPGD(PGD):
    """PGD that keeps every iterate it takes a gradient at: with ``final_iterate=True`` and no random start,
    ``trace`` holds ``x_0 = x, x_1, ..., x_{steps-1}`` and the call returns ``x_steps`` (the path of Fig. 3(b))."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: list[Tensor] = []

    def loss_and_grad(self, x: Tensor, labels: Tensor, targets: Tensor | None,
                      rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        self.trace.append(x.detach().clone())
        return super().loss_and_grad(x, labels, targets, rows)


def trajectory(model: Classifier, x: Tensor, y: Tensor, target: Tensor | None, loss: str, *, eps: float = F3B_EPS,
               step: float = F3B_STEP, steps: int = F3B_STEPS) -> tuple[Tensor, Tensor, Tensor]:
    """Features ``z`` (steps+1, N, d), predictions (steps+1, N) and inputs (steps+1, N, ...) of every PGD iterate
    (iterate 0 = the clean input), untargeted unless ``target`` is given."""
    attack = TracingPGD(model, eps, steps, step, random_start=False, final_iterate=True, loss=loss,
                        targeted=target is not None)
    final = attack(x, y, target)
    xs = torch.stack([*attack.trace, final])
    with torch.no_grad():
        z = torch.stack([model.features(xi) for xi in xs])
        pred = torch.stack([model(xi).argmax(1) for xi in xs])
    return z, pred, xs


def feature_moves(model: Classifier, x: Tensor, y: Tensor) -> dict[str, dict[str, float]]:
    """Where the untargeted attacks of Fig. 3(b) take the 2-d features (the last of the paper's 50 iterates):
    mean ``||z||`` before and after, and the mean absolute change of the angle ``atan2(z_2, z_1)`` in degrees."""
    out = {}
    for label, loss, targeted in F3B_ATTACKS:
        if targeted:
            continue
        attack = PGD(model, F3B_EPS, F3B_STEPS, F3B_STEP, random_start=False, final_iterate=True, loss=loss)
        x_adv = torch.cat([attack(x[i:i + 500], y[i:i + 500]) for i in range(0, len(x), 500)])
        with torch.no_grad():
            z0, z1 = model.features(x), model.features(x_adv)
        turn = torch.atan2(z1[:, 1], z1[:, 0]) - torch.atan2(z0[:, 1], z0[:, 0])
        turn = torch.remainder(turn + torch.pi, 2 * torch.pi) - torch.pi
        out[label] = {"norm_clean": float(z0.norm(dim=1).mean()), "norm_attacked": float(z1.norm(dim=1).mean()),
                      "angle_change_deg": float(turn.abs().mean() * 180 / torch.pi)}
    return out


def _f3b_suite(steps_grid: Sequence[int]) -> dict[tuple[str, int], AttackSpec]:
    """(attack label, steps) -> PGD at the paper's eps and step, no random start (the paths start at the star)."""
    return {(label, k): AttackSpec(f"PGD{k} {label}", "pgd", {"eps": F3B_EPS, "steps": k, "step_size": F3B_STEP,
                                                              "targeted": targeted, "random_start": False,
                                                              "loss": loss})
            for label, loss, targeted in F3B_ATTACKS for k in steps_grid}


def fig3b_claims(steps_grid: Sequence[int]) -> list[Claim]:
    last = steps_grid[-1]

    def acc(results: dict[str, Any], label: str, k: int) -> float:
        return 100.0 * float(results["accuracy"][label][str(k)])

    def lower_everywhere(mode: str) -> Any:
        def check(results: dict[str, Any]) -> tuple[bool | None, str]:
            pairs = [(k, acc(results, f"adaptive, {mode}", k), acc(results, f"non-adaptive (CE), {mode}", k))
                     for k in steps_grid]
            return all(a <= b for _, a, b in pairs), "; ".join(f"PGD{k}: adaptive {a:.1f} vs non-adaptive {b:.1f}"
                                                                for k, a, b in pairs)
        return check

    def much_faster(results: dict[str, Any]) -> tuple[bool | None, str]:
        goal = acc(results, "non-adaptive (CE), untargeted", last)
        reach = next((k for k in steps_grid if acc(results, "adaptive, untargeted", k) <= goal), None)
        return (reach is not None and reach <= last / 2,
                f"non-adaptive PGD{last} leaves {goal:.1f}%; the adaptive attack gets there at "
                + (f"{reach} steps" if reach is not None else f"no step count up to {last}"))

    def near_strongest(results: dict[str, Any]) -> tuple[bool | None, str]:
        a, w = acc(results, "adaptive, untargeted", last), 100.0 * results["strongest"]
        return a - w <= 2.0, f"adaptive PGD{last} untargeted {a:.1f} vs strongest (worst case) {w:.1f}"

    return [
        Claim("The adaptive attack is more efficient than the non-adaptive one: untargeted, it leaves no more "
              f"accuracy at every step count ({', '.join(map(str, steps_grid))})", "l.201, Fig. 3(b)",
              lower_everywhere("untargeted")),
        Claim("The same for the targeted attacks (accuracy after targeted PGD towards random classes)",
              "l.201, Fig. 3(b)", lower_everywhere("targeted")),
        Claim(f"'Much more efficient': the adaptive untargeted attack reaches the non-adaptive PGD{last} accuracy "
              f"within half the steps ({last // 2})", "l.201", much_faster),
        Claim(f"(beyond the paper) The adaptive PGD{last} is within 2 points of the strongest attack (per-example "
              "worst case of the ensemble at eps 0.3)", "our ensemble", near_strongest),
    ]


def _fig3b_run(ctx: Context) -> Outcome:
    plt = pyplot()
    s = F3B_SCALES[ctx.scale]
    n = ctx.n_eval(s.n)
    run_dir = ctx.train("MMC-10, 2-d features", s.config)
    model = load_run(run_dir, device=ctx.device)
    device = resolve_device(ctx.device)
    x_all, y_all = datasets.load(s.config.dataset, "test", ctx.data_dir)
    with torch.no_grad():
        z_all = torch.cat([model.features(x_all[i:i + 1000].to(device)).cpu() for i in range(0, len(x_all), 1000)])
    pred_all = predict(model, x_all, 1000, device)

    suite = _f3b_suite(s.steps_grid)
    res = ctx.evaluate(run_dir, list(suite.values()), name=f"mmc-fig3b-{ctx.scale}", n=n)
    by_label = {a["label"]: a["robust_accuracy"] for a in res["attacks"]}
    accuracy = {label: {str(k): by_label[suite[(label, k)].label] for k in s.steps_grid} for label, _, _ in F3B_ATTACKS}
    strong = ctx.evaluate(run_dir, strong_suite(s.strong, F3B_EPS), name=f"mmc-fig3b-{ctx.scale}-strong", n=n,
                          worst_case=True)

    moves = feature_moves(model, x_all[:n].to(device), y_all[:n].to(device))

    # the paper's two panels: two randomly selected (correctly classified) clean test inputs
    gen = torch.Generator().manual_seed(0)
    correct = torch.nonzero(pred_all == y_all).flatten()
    picks = correct[torch.randperm(len(correct), generator=gen)[:2]].sort().values
    x0, y0 = x_all[picks].to(device), y_all[picks].to(device)
    targets = ((y0.cpu() + torch.randint(1, 10, (2,), generator=gen)) % 10).to(device)
    paths: dict[str, dict[str, Any]] = {}
    for label, loss, targeted in F3B_ATTACKS:
        z, pred, xs = trajectory(model, x0, y0, targets if targeted else None, loss)
        paths[label] = {"features": z.permute(1, 0, 2).cpu().tolist(), "predictions": pred.T.cpu().tolist(),
                        "linf": (xs - x0).flatten(2).abs().amax(2).amax(0).cpu().tolist()}
    centers_of = getattr(model.objective, "class_centers", None)
    centers = centers_of().detach().cpu() if callable(centers_of) else None

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    cmap = plt.get_cmap("tab10")
    styles = {"non-adaptive (CE), untargeted": ("black", "--"), "adaptive, untargeted": ("red", "-"),
              "non-adaptive (CE), targeted": ("grey", ":"), "adaptive, targeted": ("magenta", "-.")}
    marks = [k for k in (10, 20, 30, 40, 50) if k <= F3B_STEPS]
    for p, ax in enumerate(axes):
        ax.scatter(z_all[:, 0], z_all[:, 1], c=[cmap(int(c)) for c in y_all], s=1, alpha=0.25, rasterized=True)
        if centers is not None:
            ax.scatter(centers[:, 0], centers[:, 1], marker="x", s=40, color="black", lw=1, label="MM centers")
        for label, path in paths.items():
            colour, ls = styles[label]
            zz = torch.tensor(path["features"][p])
            tgt = f" (target {int(targets[p])})" if label.endswith(", targeted") else ""
            ax.plot(zz[:, 0], zz[:, 1], color=colour, ls=ls, lw=1.4, label=label + tgt)
            ax.scatter(zz[marks, 0], zz[marks, 1], color=colour, s=12, zorder=4)
            for k in (10, 50):
                ax.annotate(f"Iter-{k}", (float(zz[k, 0]), float(zz[k, 1])), fontsize=7, color=colour,
                            xytext=(3, 3), textcoords="offset points")
        z0 = torch.tensor(paths["adaptive, untargeted"]["features"][p][0])
        ax.scatter([float(z0[0])], [float(z0[1])], marker="*", s=220, color="black", zorder=5, label="clean input")
        ax.set_aspect("equal", adjustable="datalim")
        label_axes(ax, "z_1", "z_2", f"test image #{int(picks[p])} (class {int(y0[p])})")
    fig.suptitle(f"PGD in the 2-d feature space of an MMC-10 network (eps {F3B_EPS}, step {F3B_STEP}, {F3B_STEPS} "
                 f"iterations; {len(x_all)} {s.config.dataset} test features coloured by class)")
    fig.tight_layout()
    ctx.figure(fig, "feature_trajectories")

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, _, _ in F3B_ATTACKS:
        colour, ls = styles[label]
        ax.plot(s.steps_grid, [100 * accuracy[label][str(k)] for k in s.steps_grid], color=colour, ls=ls,
                marker="o", ms=3, label=label)
    ax.axhline(100 * strong["worst_case_accuracy"], color="blue", lw=1, label="strongest (worst case of the ensemble)")
    label_axes(ax, "PGD iterations (eps 0.3, step 0.01)", f"accuracy (%) on {n} test images",
               f"adaptive vs non-adaptive PGD on the 2-d MMC-10 network ({ctx.scale} scale)")
    ctx.figure(fig, "accuracy_vs_steps")

    header = ["attack", *(f"PGD{k}" for k in s.steps_grid)]
    rows = [[label, *(pct(accuracy[label][str(k)]) for k in s.steps_grid)] for label, _, _ in F3B_ATTACKS]
    rows.append(["**strongest** (per-example worst case of the ensemble, eps 0.3)", *([""] * (len(s.steps_grid) - 1)),
                 pct(strong["worst_case_accuracy"])])
    first_fool = {label: [next((i for i, c in enumerate(path["predictions"][p]) if c != int(y0[p])), None)
                          for p in range(2)] for label, path in paths.items()}
    sections = [
        "## The paper's figure\n\nFig. 3(b) of the MMC paper (caption l.158, text l.201): an MMC network with a "
        "two-dimensional feature layer on MNIST, PGD with eps = 0.3, step size 0.01, 50 iterations (\"Iter-n\" marks "
        "the perturbed feature after n steps); two panels, each for one randomly selected clean input (black star), "
        "over the features of all 10,000 test images; adaptive objectives (-L_MMC(z, y) untargeted, L_MMC(z, y_t) "
        "targeted) against the non-adaptive, SCE-type one. No numbers are printed; the image is absent from the "
        "paper's text.\n",
        f"## Ours: accuracy (%) under PGD with the paper's eps and step\n\nMMC-10 network with a 2-d feature layer, "
        f"clean accuracy {pct(res['clean_accuracy'])}% on the first {n} test images (all {len(x_all)}: "
        f"{pct(float((pred_all == y_all).float().mean()))}%). PGD without random start (the paths of the figure "
        "start at the clean input); targeted: towards a random class per image; an image counts as robust if no "
        "iterate up to the step count misclassifies it. The paper's attack is the PGD50 column; beside it the "
        f"strongest attack (ensemble: {', '.join(a['label'] for a in strong['attacks'])}).\n\n"
        + markdown_table(header, rows),
        "## The two panels\n\n" + markdown_table(
            ["panel", "test image", "class", "target (targeted attacks)",
             *(f"first misclassifying iterate: {label}" for label, _, _ in F3B_ATTACKS)],
            [[str(p + 1), f"#{int(picks[p])}", str(int(y0[p])), str(int(targets[p])),
              *(str(first_fool[label][p]) if first_fool[label][p] is not None else f"none in {F3B_STEPS}"
                for label, _, _ in F3B_ATTACKS)] for p in range(2)])]
    sections.append(
        f"## Where the untargeted attacks move the features\n\nOn the first {n} test images, the last of the "
        f"paper's {F3B_STEPS} iterates (no early stop): the mean distance of the feature from the origin before and "
        "after, and the mean absolute change of its angle. The classes sit on a circle (one center every "
        "36 degrees), so an attack crosses a class boundary by turning the feature, not by pushing it outward.\n\n"
        + markdown_table(["attack", "mean norm of z, clean", f"mean norm of z after PGD{F3B_STEPS}",
                          "mean absolute angle change (degrees)"],
                         [[label, f"{m['norm_clean']:.2f}", f"{m['norm_attacked']:.2f}", f"{m['angle_change_deg']:.1f}"]
                          for label, m in moves.items()]))
    deviations = [("network", "ResNet-32 (presumably; not restated) with a 2-d feature layer",
                   "ResNet-32 with a 2-d dense feature layer" if s.config.model == "resnet" else
                   "LeNet-5 with a 2-d feature layer"),
                  ("epochs", "40 on MNIST (l.174)", str(s.config.epochs)),
                  ("MM centers", "Algorithm 1 needs d >= L - 1 = 9 (the 2-d case is not described)",
                   "10 centers spread evenly on the circle of radius 10 (robustloss.centers.spread_centers)"),
                  ("accuracies", "none (an illustration)",
                   f"measured on {n} test images, PGD {'/'.join(map(str, s.steps_grid))} steps")]
    if ctx.scale == "smoke":
        deviations[0] = ("network", "ResNet-32 on MNIST", f"LeNet-5 on synthetic 16x16 data "
                         f"({s.config.train_limit} training images)")
    results = {"n": n, "clean_accuracy": res["clean_accuracy"], "accuracy": accuracy,
               "strongest": strong["worst_case_accuracy"], "strongest_attacks": [a["label"] for a in strong["attacks"]],
               "panels": [{"index": int(picks[p]), "label": int(y0[p]), "target": int(targets[p])} for p in range(2)],
               "trajectories": paths, "first_misclassified": first_fool, "feature_moves": moves, "run": str(run_dir)}
    return Outcome(sections, results, fig3b_claims(s.steps_grid), deviations)


MMC_FIG3B = Recipe(
    "mmc-fig3b", "adaptive vs non-adaptive PGD in a 2-d feature space (MMC paper Fig. 3(b))", ("M9",), MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, LeNet-5 with 2-d features + MMC-10, 1 epoch on 512 images, 32 test "
                    "points, PGD 2/5 steps (paths: 50)",
           "cpu": "MNIST, LeNet-5 with 2-d features + MMC-10 (10 epochs), PGD eps 0.3 step 0.01 at 5-50 steps on "
                  "1,000 test images, the strong ensemble, two 50-step paths",
           "paper": "MNIST, ResNet-32 with 2-d features + MMC-10 (40 epochs), 10,000 test images"},
    times={"smoke": "measured ~5 s", "cpu": "measured 780 s with --threads 1 on the loaded 2-core machine (training 615 s: 22-64 s per "
                   "epoch as the load varied); 100 s with the model cached",
           "paper": "estimated ~2 GPU hours"},
    run=_fig3b_run)


# ---------------------------------------------------------------------------------------------- mmc-fig4
def transfer_spec(attack: str, eps: float, steps: int, step: float) -> AttackSpec:
    """Untargeted PGD (random start) or MIM (decay 1.0, Dong et al. 2018) at ``eps`` (the paper states no values)."""
    params: dict[str, Any] = {"eps": eps, "steps": steps, "step_size": step}
    params.update({"random_start": True} if attack == "pgd" else {"decay": 1.0})
    return AttackSpec(f"{attack.upper()}{steps} un eps={eps:.4g}", attack, params)


def draw_matrix(ax: Any, names: Sequence[str], matrix: dict[tuple[str, str], float], title: str,
                labels: Sequence[str] | None = None) -> None:
    """A substitute (rows) x target (columns) heatmap of accuracies with the percentage in every cell
    (tick ``labels``: the ``names`` unless given)."""
    values = [[100 * matrix[(s, t)] for t in names] for s in names]
    ticks = [n.replace(" (", "\n(") for n in (labels if labels is not None else names)]
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=100)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(names)), ticks, fontsize=7, rotation=30)
    ax.set_yticks(range(len(names)), ticks, fontsize=7)
    ax.set_xlabel("target model")
    ax.set_ylabel("substitute model")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="accuracy (%)")


def matrix_markdown(names: Sequence[str], matrix: dict[tuple[str, str], float],
                    extra: Sequence[tuple[str, dict[str, float]]] = ()) -> str:
    """The matrix as a Markdown table (rows: substitutes, columns: targets), then ``extra`` rows per target."""
    rows = [[f"{s} (substitute)", *(pct(matrix[(s, t)]) for t in names)] for s in names]
    rows += [[label, *(pct(values[t]) for t in names)] for label, values in extra]
    return markdown_table(["crafted on \\ evaluated on", *names], rows)


def _matrix_json(names: Sequence[str], matrix: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    return {s: {t: matrix[(s, t)] for t in names} for s in names}


def fig4_claims(eps_names: Sequence[str]) -> list[Claim]:
    def worst_transfer(results: dict[str, Any], key: str, target: str) -> float:
        m = results["matrices"][key]
        return min(m[s][target] for s in m if s != target)

    def mmc_resists(results: dict[str, Any]) -> tuple[bool | None, str]:
        out = []
        for key in results["matrices"]:
            out.append((key, worst_transfer(results, key, "MMC-10"), worst_transfer(results, key, "SCE")))
        return all(m > s for _, m, s in out), "; ".join(f"{k}: MMC-10 {100 * m:.1f} vs SCE {100 * s:.1f}"
                                                          for k, m, s in out)

    def black_weaker(results: dict[str, Any]) -> tuple[bool | None, str]:
        worst = ("", float("inf"))
        for key, m in results["matrices"].items():
            eps_name = results["attack_eps"][key]
            for target in m:
                gap = worst_transfer(results, key, target) - results["strongest"][eps_name][target]
                if gap < worst[1]:
                    worst = (f"{target}, {key}", gap)
        return worst[1] >= 0, (f"smallest (best transfer - strongest white-box) accuracy: {100 * worst[1]:.1f} "
                               f"points ({worst[0]})")

    return [
        Claim("Training with MMC also gives robustness under black-box transfer attacks: MMC-10 as the target "
              "keeps more accuracy than SCE under its most effective other substitute, for PGD and MIM at every eps",
              "l.225, Fig. 4", mmc_resists),
        Claim("The robustness is not caused by gradient masking: for every target, the best transfer attack leaves "
              "at least the accuracy of the strongest white-box attack", "l.225", black_weaker),
    ]


def _fig4_run(ctx: Context) -> Outcome:
    plt = pyplot()
    s = T1_SCALES[ctx.scale]
    n = ctx.n_eval(s.n)
    runs = table1_runs(ctx)
    device = resolve_device(ctx.device)
    dataset = s.config("sce", {}, None).dataset
    x, y = _test_set(dataset, ctx.data_dir, n)
    x, y = x.to(device), y.to(device)
    models = {row: load_run(run_dir, device=ctx.device) for row, run_dir in runs.items()}
    names = list(models)
    clean = {row: _accuracy(m, x, y, device) for row, m in models.items()}
    steps = s.pgd_steps[0]
    matrices: dict[str, dict[str, dict[str, float]]] = {}
    attack_eps: dict[str, str] = {}
    strongest: dict[str, dict[str, float]] = {}
    sections = ["## The paper's figure\n\nFig. 4 of the MMC paper (caption l.195, text l.225): accuracy on the "
                "CIFAR-10 test set under black-box transfer attacks, PGD and MIM, untargeted only (targeted examples "
                "transfer poorly, l.225), crafted on a substitute model and evaluated on a target model; \"AT refers "
                "to AT10 tar\". eps, iterations, step size and the MIM decay are not stated; the paper prints no "
                "numbers and the image is absent from its text.\n"]
    for eps, eps_name in zip(s.eps, s.eps_names):
        strongest[eps_name] = {row: ctx.evaluate(run_dir, strong_suite(s, eps), n=n, worst_case=True,
                                                 name=f"mmc-table1-{ctx.scale}-strong-{eps:.4g}")
                               ["worst_case_accuracy"] for row, run_dir in runs.items()}
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        for ax, attack in zip(axes, ("pgd", "mim")):
            spec = transfer_spec(attack, eps, steps, s.step)
            ctx.log(f"transfer {spec.label} over {len(names)} models on {n} test points")
            matrix = transfer_matrix(models, models, x, y, spec)
            key = f"{attack.upper()}{steps} eps={eps_name}"
            matrices[key] = _matrix_json(names, matrix)
            attack_eps[key] = eps_name
            draw_matrix(ax, names, matrix, f"{spec.label} (the paper's eps {eps_name})")
            sections.append(
                f"## {key}: transfer {attack.upper()}, untargeted, eps {eps:.4g} (the paper's {eps_name}), "
                f"{steps} steps of {s.step:.4g}\n\nAccuracy (%) of each target (column) on the {n} test points "
                "crafted on each substitute (row), with the substitute's own adaptive loss, last iterate. The "
                "diagonal is the white-box attack (last iterate). Below: the target's clean accuracy and its "
                "**strongest** white-box accuracy (per-example worst case of mmc-table1's ensemble at this eps). "
                "The paper: no numbers.\n\n"
                + matrix_markdown(names, matrix, [("clean", clean),
                                                  ("**strongest** white-box (worst case)", strongest[eps_name])]))
        fig.suptitle(f"transfer attacks, untargeted, eps {eps:.4g} (the paper's {eps_name}); {dataset}, {n} test "
                     f"points ({ctx.scale} scale)")
        fig.tight_layout()
        ctx.figure(fig, f"transfer_eps{eps_name.replace('/', '_')}")
    deviations = [("attack settings", "not stated", f"{steps} steps of {s.step:.4g} at eps {', '.join(f'{e:.4g}' for e in s.eps)} "
                   "(mmc-table1's PGD10 setting); PGD with random start, MIM decay 1.0 (Dong et al. 2018); last "
                   "iterate, crafted with the substitute's adaptive loss"),
                  ("models", "not stated beyond 'AT refers to AT10 tar'", ", ".join(names))]
    if ctx.scale != "paper":
        deviations = [("dataset", "CIFAR-10 test set", f"{dataset}, first {n} test images"),
                      ("backbone", "ResNet-32", "LeNet-5 (mmc-table1's models)"), *deviations]
    results = {"n": n, "dataset": dataset, "models": {r: str(d) for r, d in runs.items()}, "clean": clean,
               "matrices": matrices, "attack_eps": attack_eps, "strongest": strongest,
               "eps": dict(zip(s.eps_names, s.eps)), "steps": steps, "step": s.step}
    return Outcome(sections, results, fig4_claims(s.eps_names), deviations)


MMC_FIG4 = Recipe(
    "mmc-fig4", "black-box transfer PGD / MIM between SCE, MMC-10 and AT10 tar models (MMC paper Fig. 4)", ("M10",),
    MMC_PAPER,
    plans={"smoke": "synthetic 16x16 data, mmc-table1's smoke configs of SCE, MMC-10 and AT10 tar of both, 32 test "
                    "points, 2-step PGD / MIM",
           "cpu": "MNIST, mmc-table1's cpu models SCE, MMC-10, AT10 tar (SCE), AT10 tar (MMC-10); PGD-10 / MIM-10 "
                  "at eps 0.1 and 0.2, step 0.025, 1,000 test points",
           "paper": "CIFAR-10 (--data-dir), mmc-table1's paper models; PGD-10 / MIM-10 at eps 8/255 and 16/255, "
                    "step 2/255, 10,000 test points"},
    times={"smoke": "measured ~10 s", "cpu": "~3 min after mmc-table1 --scale cpu (its four models and strong "
                                             "evaluations are reused)",
           "paper": "~1 GPU hour after mmc-table1 --scale paper"},
    run=_fig4_run)


# ------------------------------------------------------------------------------------- robustloss transfer
def transfer_command(run_dirs: Sequence[str], attack: str, *, n: int | None = 1000, out: str | Path,
                     batch_size: int = 500, device: str = "auto",
                     data_dir: str | None = None) -> tuple[dict[str, Any], str, list[str]]:
    """The transfer matrix of ``run_dirs`` (each one substitute and target) under ``attack`` (``NAME:k=v,...``).

    Writes ``OUT/transfer-NAME.md``, ``.json`` and ``.png`` (heatmap); returns the JSON, the Markdown and notes for the user
    (e.g. the filled-in default eps).  Every argument is checked before anything is written.
    """
    if len(run_dirs) < 2:
        raise UserError(f"a transfer matrix needs at least two run folders, got {len(run_dirs)}")
    seen: dict[Path, str] = {}
    for run in run_dirs:
        key = Path(run).resolve()
        if key in seen:
            raise UserError(f"run folder {run} is given twice ({seen[key]})")
        seen[key] = run
    configs = {run: read_config(run) for run in run_dirs}
    data = {c.dataset for c in configs.values()}
    if len(data) > 1:
        raise UserError("the run folders are trained on different datasets (" + ", ".join(
            f"{r}: {c.dataset}" for r, c in configs.items()) + "); a transfer matrix needs one test set")
    dataset = data.pop()
    spec = parse_spec(attack)
    if spec.attack not in TRANSFER_ATTACKS:
        raise unknown_choice("transfer attack", spec.attack, TRANSFER_ATTACKS)
    [spec], notes = with_default_eps([spec], dataset)
    if n is not None:
        check_int("number of evaluation points", n, 1)
    batch_size = check_int("batch size", batch_size, 1)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output path {out_dir} exists and is not a folder")
    plt = pyplot()
    dev = resolve_device(device)
    models = {run: load_run(run, device=str(dev)) for run in run_dirs}
    from robustloss.attacks.transfer import build_crafting_attack

    build_crafting_attack(next(iter(models.values())), spec.attack, spec.params)   # bad option values fail here
    x, y = datasets.load(dataset, "test", data_dir if data_dir is not None else configs[run_dirs[0]].data_dir)
    if n is not None:
        x, y = x[:n], y[:n]
    x, y = x.to(dev), y.to(dev)
    names = list(models)
    matrix = transfer_matrix(models, models, x, y, spec, batch_size=batch_size)
    clean = {run: _accuracy(m, x, y, dev) for run, m in models.items()}
    result = {"attack": {"label": spec.label, "attack": spec.attack, "params": spec.params}, "dataset": dataset,
              "n": len(x), "runs": {run: {"objective": c.objective, "model": c.model} for run, c in configs.items()},
              "clean_accuracy": clean, "matrix": _matrix_json(names, matrix)}
    text = (f"# Transfer matrix: {spec.label}\n\nAccuracy (%) of each target (column) on the first {len(x)} "
            f"{dataset} test images crafted on each substitute (row) with the substitute's own adaptive loss (last "
            "iterate); the diagonal is the white-box attack.\n\n"
            + matrix_markdown(names, matrix, [("clean", clean)])
            + "\nObjectives: " + ", ".join(f"{r}: {c.objective} ({c.model})" for r, c in configs.items()) + "\n")
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 3, 1.3 * len(names) + 2.5))
    draw_matrix(ax, names, matrix, f"transfer {spec.label}, {len(x)} {dataset} test images",
                [f"{Path(r).name} ({configs[r].objective})" for r in names])
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"transfer-{spec.attack}"

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")

    atomic_write(stem.with_suffix(".png"), write)
    plt.close(fig)
    atomic_write_json(stem.with_suffix(".json"), result)
    atomic_write_text(stem.with_suffix(".md"), text)
    return result, text, notes
