"""The reproduction framework: recipes, scales, the shared run cache, reports and checked claims.

A :class:`Recipe` is data (name, experiment IDs, what each scale runs and how
long it takes) plus one function ``run(ctx) -> Outcome``.  The function trains
through :meth:`Context.train` (the run cache), evaluates through
:meth:`Context.evaluate` / :meth:`Context.diagnose`, draws with
:meth:`Context.figure`, and returns an :class:`Outcome`: Markdown sections,
JSON results, the deviations from the paper and the paper's claims as
predicates over the results.  :func:`run_recipe` writes ``report.md``,
``results.json`` and the PNG figures into the output folder.

Scales (:data:`SCALES`):

``smoke``
    tiny (a few hundred images, 1 epoch, a few dozen test points, few attack
    steps): checks the pipeline in seconds; its numbers mean nothing and every
    claim is "not at this scale".
``cpu``
    the closest analogue on 2 CPU cores in at most about 2 hours (MNIST,
    LeNet-5); the report lists every deviation from the paper.
``paper``
    the paper's setting (datasets from the user's files, the paper's backbone,
    epochs and attacks); a GPU job, with its estimated GPU hours.

The run cache: every training run lives in ``RUNS/<key>/`` where ``key`` is
a hash of the full :meth:`TrainConfig.to_dict` (:func:`run_key`), so recipes
that need the same model share it and nothing is trained twice; an unfinished
run resumes from its last epoch (:func:`robustloss.runs.train_run`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from robustloss.errors import UserError, check_int, unknown_choice
from robustloss.evaluation import diagnostics
from robustloss.evaluation.report import markdown_table
from robustloss.evaluation.suite import AttackSpec
from robustloss.io import atomic_write, atomic_write_json, atomic_write_text
from robustloss.models.randomization import apply_defense
from robustloss.reproduce.papers import Paper
from robustloss.runs import RunInUse, evaluate_run, load_run, run_is_complete, train_run
from robustloss.training.config import AdversarialConfig, TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

SCALES = ("smoke", "cpu", "paper")
YES, NO, NOT_AT_SCALE = "yes", "no", "not at this scale"


def run_key(config: TrainConfig) -> str:
    """The run-cache key of ``config``: the first 16 hex digits of the SHA-256 of its canonical JSON.

    Fields at their default value are left out, so adding a new option to :class:`TrainConfig`
    (with a default that keeps today's behaviour) does not invalidate the runs already cached;
    changing an existing default changes what a cached run means and must not be done silently.
    """
    defaults = TrainConfig().to_dict()
    data = {k: v for k, v in config.to_dict().items() if k not in defaults or v != defaults[k]}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Claim:
    """A claim of the paper and a predicate that decides it from *our* results.

    ``check(results)`` returns ``(holds, evidence)``: ``holds`` is ``True`` /
    ``False``, or ``None`` when our results cannot decide it (e.g. a model the
    scale does not train); ``evidence`` is a one-line summary of the numbers
    used.  At ``smoke`` scale the verdict is "not at this scale" unless
    ``exact`` (a claim about computed objects, not about trained models).
    """

    text: str
    source: str
    check: Callable[[dict[str, Any]], tuple[bool | None, str]]
    exact: bool = False

    def verdict(self, results: dict[str, Any], scale: str) -> dict[str, str]:
        try:
            holds, evidence = self.check(results)
        except (KeyError, IndexError) as exc:   # a number this scale did not produce
            holds, evidence = None, f"not measured at this scale (no result {exc})"
        if holds is None:
            verdict = NOT_AT_SCALE
        elif scale == "smoke" and not self.exact:
            verdict = NOT_AT_SCALE
            evidence += f" (computed: {YES if holds else NO}; smoke-scale models are untrained)"
        else:
            verdict = YES if holds else NO
        return {"claim": self.text, "source": self.source, "verdict": verdict, "evidence": evidence}


@dataclass
class Outcome:
    """What a recipe function returns; :func:`run_recipe` turns it into the report files."""

    sections: list[str]
    results: dict[str, Any]
    claims: list[Claim] = field(default_factory=list)
    #: (aspect, the paper, this run) - every way this scale differs from the paper
    deviations: list[tuple[str, str, str]] = field(default_factory=list)
    #: model -> :func:`robustloss.evaluation.diagnostics.summary` dict
    diagnostics: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Recipe:
    """A reproduction: experiment IDs, what each scale runs (``plans``) and takes (``times``), and ``run``."""

    name: str
    title: str
    experiments: tuple[str, ...]
    paper: Paper | None
    plans: dict[str, str]
    times: dict[str, str]
    run: Callable[[Context], Outcome]
    default_scale: str = "cpu"
    aliases: tuple[str, ...] = ()

    @property
    def scales(self) -> tuple[str, ...]:
        return tuple(s for s in SCALES if s in self.plans)

    @property
    def description(self) -> str:
        return f"{self.title} [{', '.join(self.experiments)}]"


@dataclass
class Context:
    """Where a recipe runs: scale, folders, device and the overrides of the command line."""

    recipe: str
    scale: str
    out_dir: Path
    runs_dir: Path
    device: str = "auto"
    data_dir: str | None = None
    progress: bool = True
    force: bool = False
    epochs: int | None = None
    n: int | None = None
    figures: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    _retrained: set[str] = field(default_factory=set)

    def log(self, message: str) -> None:
        print(f"[{self.recipe} {self.scale}] {message}", file=sys.stderr, flush=True)

    def n_eval(self, default: int) -> int:
        """The number of test points: ``--n`` when given, else the recipe's ``default``."""
        return self.n if self.n is not None else default

    def config(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the command line's ``--epochs`` and ``--data-dir`` applied."""
        if self.epochs is not None:
            config = replace(config, epochs=self.epochs,
                             lr_milestones=[m for m in config.lr_milestones if m < self.epochs])
        if self.data_dir is not None and config.dataset != "mnist" and config.dataset != "synthetic":
            config = replace(config, data_dir=str(self.data_dir))
        return config

    def run_dir(self, config: TrainConfig) -> Path:
        return self.runs_dir / run_key(self.config(config))

    def train(self, label: str, config: TrainConfig, poll_s: float = 15.0) -> Path:
        """The run folder of ``config`` in the cache, trained (or resumed) first if it is not complete.

        Recipes running side by side share models through the cache: while another
        process trains (or evaluates) the same run, this waits, polling every
        ``poll_s`` seconds, and then reuses the run.
        """
        while True:
            try:
                return self._train(label, config)
            except RunInUse as exc:
                self.log(f"{label}: {exc}; waiting {poll_s:.0f} s")
                time.sleep(poll_s)

    def _train(self, label: str, config: TrainConfig) -> Path:
        config = self.config(config)
        run_dir = self.runs_dir / run_key(config)
        retrain = self.force and run_dir.exists() and str(run_dir) not in self._retrained
        if retrain or not run_is_complete(run_dir):
            self.log(f"training {label} -> {run_dir}")
            start = time.perf_counter()
            train_run(config, run_dir, resume=not retrain, force=retrain, device=self.device,
                      progress=self.progress)
            self.log(f"trained {label} in {time.perf_counter() - start:.0f} s")
            self._retrained.add(str(run_dir))
        self.trained.append(str(run_dir))
        return run_dir

    def evaluate(self, run_dir: Path, suite: list[AttackSpec], *, name: str, n: int,
                 worst_case: bool = False, defense: str | None = None) -> dict[str, Any]:
        """:func:`robustloss.runs.evaluate_run` with reuse: a finished identical evaluation is read, not rerun.

        ``defense`` (e.g. ``"randomization"``) evaluates the run's model behind that defence; the name gets
        ``-<defense>`` appended, so the defended and undefended results of one run never share a file.
        """
        if defense is not None:
            name = f"{name}-{defense}"
        return evaluate_run(run_dir, suite, name=name, n=n, device=self.device, worst_case=worst_case,
                            data_dir=self.data_dir, progress=self.progress, reuse=not self.force, defense=defense)

    def diagnose(self, run_dir: Path, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                 defense: str | None = None, **options: Any) -> dict[str, Any]:
        """The gradient-masking checks on ``run_dir``'s model (behind ``defense``, seeded 0, if given), cached in
        ``RUN/eval/`` by their settings (the defence among them)."""
        settings = {"eps": eps, "n": len(x), **options}
        if defense is not None:   # absent without a defence: the cached checks of undefended models keep their key
            settings["defense"] = defense
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        path = run_dir / "eval" / f"diagnostics-{key}.json"
        if path.is_file() and not self.force:
            return dict(json.loads(path.read_text()))
        model: torch.nn.Module = load_run(run_dir, device=self.device)
        if defense is not None:
            model = apply_defense(defense, model, int(x.shape[-1]), seed=0)
        checks = diagnostics.diagnose(model, x, y, eps=eps, n=len(x), device=_device(self.device), **options)
        summary = diagnostics.summary(checks, **settings)
        atomic_write_json(path, summary)
        return summary

    def figure(self, fig: Figure, name: str) -> str:
        """Save ``fig`` as ``OUT/NAME.png`` (atomically) and close it; returns the file name."""
        import matplotlib.pyplot as plt

        file = f"{name}.png"

        def write(tmp: Path) -> None:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")

        atomic_write(self.out_dir / file, write)
        plt.close(fig)
        self.figures.append(file)
        return file


def _device(device: str) -> torch.device:
    from robustloss.device import resolve_device

    return resolve_device(device)


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend (a :class:`UserError` if not installed)."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("reproduction figures need matplotlib: pip install 'matplotlib>=3.7'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label_axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    """Axis labels, title, a light grid and a small legend: the house style of every recipe's line plots."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def robustness_panels(fig: Any, axes: Any, paper_attack: str, ylabel: str, title: str) -> None:
    """Style the two panels of a robustness curve: the paper's attack (left) and the strongest (right)."""
    axes[0].set_title(f"paper's attack ({paper_attack})")
    axes[1].set_title("strongest: per-example worst case of the ensemble")
    for ax in axes:
        ax.set_xlabel("L-inf eps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    # beside the panels, not on them: with many models a legend inside hides the curves it names
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(title)


# ------------------------------------------------------------------------------------- shared configs
def pgd_at(eps: float, step: float, targeted: bool) -> AdversarialConfig:
    """The MMC paper's adversarial training (l.176): 10-step PGD, targeted or untargeted, crafted with the
    objective's own (adaptive) loss."""
    return AdversarialConfig(method="pgd", eps=eps, steps=10, step_size=step, targeted=targeted)


def mnist_config(epochs: int, at_epochs: int, train_limit: int | None) -> Callable[..., TrainConfig]:
    """``make(objective, options, at)``: the MNIST LeNet-5 recipe of ``mmc-table1``'s ``cpu`` scale, shared by
    recipes so that a model trained by one is reused by the others (the run cache).

    Momentum SGD (0.9), lr 0.01, batch 128, seed 0 (the MMC paper's optimizer and lr, l.174); ``at=None``: no AT,
    else :func:`pgd_at` at eps 0.1 step 0.025 (targeted if ``at``) for ``at_epochs`` epochs.
    """
    def make(objective: str, options: dict[str, Any], at: bool | None) -> TrainConfig:
        return TrainConfig(dataset="mnist", model="lenet5", objective=objective, objective_options=dict(options),
                           epochs=epochs if at is None else at_epochs, batch_size=128, lr=0.01, momentum=0.9,
                           seed=0, train_limit=train_limit,
                           adversarial=None if at is None else pgd_at(0.1, 0.025, at))
    return make


# ----------------------------------------------------------------------------------------------- reports
def pct(value: float | None) -> str:
    """An accuracy in [0, 1] as a percentage with one decimal (``-`` when missing)."""
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def claims_section(verdicts: list[dict[str, str]]) -> str:
    rows = [[v["claim"], v["source"], f"**{v['verdict']}**", v["evidence"]] for v in verdicts]
    return ("## The paper's claims, checked on our numbers\n\nEach verdict is computed from this run's results "
            "by a predicate stated in the claim (no hand-written verdicts).\n\n"
            + markdown_table(["claim", "where", "holds here?", "our numbers"], rows))


def diagnostics_section(diags: dict[str, dict[str, Any]]) -> str:
    if not diags:
        return ""
    names = list(diagnostics.CHECKS)
    rows = []
    warnings = []
    for model, diag in diags.items():
        by_name = {c["name"]: c for c in diag["checks"]}
        rows.append([model, *("pass" if by_name[c]["passed"] else "**FAIL**" if c in by_name else "-"
                              for c in names if True)])
        warnings += [f"- {model}: {line}" for line in diagnostics.warning_lines(diag["checks"])]
    first = next(iter(diags.values()))
    text = (f"## Gradient-masking diagnostics\n\nThe checks of `robustloss.evaluation.diagnostics` on every model "
            f"(eps={first.get('eps', 0):.4g}, first {first.get('n', '?')} test points).\n\n"
            + markdown_table(["model", *names], rows))
    text += "\n### Warnings\n\n" + ("\n".join(warnings) + "\n" if warnings else
                                   "None: every gradient-masking check passed on every model.\n")
    return text


def deviations_section(deviations: Sequence[tuple[str, str, str]]) -> str:
    if not deviations:
        return ""
    return ("## Deviations from the paper at this scale\n\n"
            + markdown_table(["aspect", "the paper", "this run"], [list(d) for d in deviations]))


def run_recipe(recipe: Recipe, ctx: Context) -> dict[str, Any]:
    """Run ``recipe`` in ``ctx``; writes ``report.md``, ``results.json`` and the figures; returns the results."""
    if ctx.scale not in recipe.plans:
        raise unknown_choice(f"scale of recipe {recipe.name}", ctx.scale, recipe.scales)
    start = time.perf_counter()
    outcome = recipe.run(ctx)   # the output folder is made by its first file (atomic_write): a refused run leaves none
    wall = time.perf_counter() - start
    verdicts = [claim.verdict(outcome.results, ctx.scale) for claim in outcome.claims]
    command = f"robustloss reproduce {recipe.name} --scale {ctx.scale}"
    paper_name = recipe.paper.title if recipe.paper is not None else "no paper"
    header = [f"# {recipe.name}: {recipe.title}", "",
              f"Experiments: {', '.join(recipe.experiments)} of {paper_name} "
              "(IDs of `seed-experiments.md`).", "",
              f"**Scale: `{ctx.scale}`** - {recipe.plans[ctx.scale]}", ""]
    if ctx.scale != "paper":
        header += [f"> **This is not the paper's setting.** Our numbers come from the `{ctx.scale}` scale; the "
                   "paper's numbers shown beside them come from the paper's setting (see the deviations table). "
                   "Compare trends and orderings, not values." + (" Smoke-scale models are untrained: their "
                                                                 "numbers check the pipeline only."
                                                                 if ctx.scale == "smoke" else ""), ""]
    header += [f"Command: `{command}`. Wall time of this invocation: {wall:.0f} s "
               f"(cached training runs and evaluations are reused, not counted again). "
               f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.machine()}, "
               f"CPU kernels {torch.backends.cpu.get_cpu_capability()} (float results, and on AVX-512 the default "
               "weight layout, depend on them).", ""]
    body = "\n".join(header) + "\n" + "\n".join(s.rstrip() + "\n" for s in outcome.sections)
    for extra in (deviations_section(outcome.deviations), diagnostics_section(outcome.diagnostics)):
        if extra:
            body += "\n" + extra
    if ctx.figures:
        body += "\n## Figures\n\n" + "".join(f"![{f}]({f})\n\n" for f in ctx.figures)
    body += "\n" + claims_section(verdicts)
    results = {"recipe": recipe.name, "title": recipe.title, "experiments": list(recipe.experiments),
               "paper": None if recipe.paper is None else recipe.paper.title, "scale": ctx.scale,
               "plan": recipe.plans[ctx.scale], "command": command, "wall_time_s": round(wall, 1),
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "runs": sorted(set(ctx.trained)), "figures": list(ctx.figures),
               "deviations": [{"aspect": a, "paper": p, "ours": o} for a, p, o in outcome.deviations],
               "diagnostics": outcome.diagnostics, "claims": verdicts, "results": outcome.results}
    atomic_write_json(ctx.out_dir / "results.json", results)
    atomic_write_text(ctx.out_dir / "report.md", body)
    return results


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise unknown_choice("scale", scale, SCALES)
    return scale


def check_n(n: int | None) -> int | None:
    return None if n is None else check_int("number of evaluation points", n, 1)
