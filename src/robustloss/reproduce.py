"""One-command reproductions: recipes of training runs plus an evaluation suite.

``robustloss reproduce mnist-quick`` trains LeNet-5 with SCE and with MMC-10 on
MNIST and evaluates both under targeted and untargeted PGD (10 and 40 steps,
eps 0.1/0.2/0.3, step 0.01, random start; seed 000 Sec. 4.2), adaptive for MMC
(the objective's own loss is used automatically).  Every step resumes: finished
runs are not retrained, finished attacks are not rerun.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from robustloss.errors import unknown_choice
from robustloss.evaluation.report import results_table
from robustloss.evaluation.runs import evaluate_run
from robustloss.evaluation.suite import SUITES
from robustloss.io import atomic_write_json, atomic_write_text
from robustloss.training.config import TrainConfig
from robustloss.training.run import read_config, run_is_complete, train_run


@dataclass
class Recipe:
    """Named training configs, the suite to evaluate them with, and how many test points."""

    description: str
    runs: dict[str, TrainConfig]
    suite: str
    n_eval: int = 1000
    paper: dict[str, dict[str, Any]] = field(default_factory=dict)


def _mnist(objective: str, **options: Any) -> TrainConfig:
    # seed 000 Sec. 4.1 trains 40 epochs on MNIST; 5 keeps the quick recipe within minutes on 2 CPU cores.
    return TrainConfig(dataset="mnist", model="lenet5", objective=objective, objective_options=dict(options),
                       epochs=5, batch_size=128, lr=0.01, momentum=0.9, seed=0)


RECIPES: dict[str, Recipe] = {
    "mnist-quick": Recipe(
        "LeNet-5 on MNIST, SCE vs MMC-10, adaptive PGD (10/40 steps, eps 0.1-0.3)",
        {"SCE": _mnist("sce"), "MMC-10": _mnist("mmc", c_mm=10.0)},
        "mnist-pgd", n_eval=1000),
}


def reproduce(name: str, out: str | Path | None = None, *, device: str = "auto", epochs: int | None = None,
              n_eval: int | None = None, force: bool = False, progress: bool = True) -> str:
    """Run recipe ``name`` into ``out`` (default ``results/NAME``); returns the Markdown table."""
    if name not in RECIPES:
        raise unknown_choice("recipe", name, RECIPES)
    recipe = RECIPES[name]
    out_dir = Path(out) if out is not None else Path("results") / name
    suite = SUITES[recipe.suite]
    n = n_eval if n_eval is not None else recipe.n_eval
    results: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    for label, config in recipe.runs.items():
        if epochs is not None:
            config = replace(config, epochs=epochs)
        run_dir = out_dir / "runs" / label
        fresh = force or not (run_dir / "config.json").is_file() or read_config(run_dir).to_dict() != config.to_dict()
        if fresh or not run_is_complete(run_dir):
            print(f"[{name}] training {label} -> {run_dir}", file=sys.stderr)
            train_run(config, run_dir, resume=not fresh, force=fresh and (run_dir / "config.json").exists(),
                      device=device, progress=progress)
        print(f"[{name}] evaluating {label} on {n} test images ({len(suite)} attacks)", file=sys.stderr)
        results[label] = evaluate_run(run_dir, suite, name=recipe.suite, n=n, device=device, progress=progress)
    table = results_table(results)
    elapsed = time.perf_counter() - start
    header = (f"# {name}: {recipe.description}\n\nRobust accuracy (%) on the first {n} test images; "
              f"attacks use each objective's adaptive loss. Wall time of this invocation: {elapsed:.0f} s.\n\n")
    atomic_write_text(out_dir / "table.md", header + table)
    atomic_write_json(out_dir / "table.json", {"recipe": name, "n": n, "results": results})
    return header + table
