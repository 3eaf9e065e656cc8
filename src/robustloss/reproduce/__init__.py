"""One-command reproductions of the papers' experiments: ``robustloss reproduce NAME [--scale ...]``.

The framework (scales, run cache, reports, claims) is :mod:`robustloss.reproduce.framework`;
the papers' numbers are data in :mod:`robustloss.reproduce.papers`; each recipe is a
:class:`~robustloss.reproduce.framework.Recipe` in :data:`RECIPES`.  Adding one: write its
``run(ctx) -> Outcome`` function, give it plans and times per scale, list it here, and
add its smoke test to ``tests/test_reproduce.py`` (PC-paper recipes: ``tests/test_reproduce_pc.py``, I-SCE
paper recipes: ``tests/test_reproduce_isce.py``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from robustloss.errors import UserError, unknown_choice
from robustloss.evaluation.report import markdown_table
from robustloss.io import atomic_write_text
from robustloss.reproduce.framework import SCALES, Context, Recipe, check_n, check_scale, run_recipe
from robustloss.reproduce.isce import ISCE_RECIPES
from robustloss.reproduce.legacy import LEGACY
from robustloss.reproduce.mmc import MMC_CENTERS, MMC_TABLE1
from robustloss.reproduce.mmc_figures import MMC_FIG3A, MMC_FIG3B, MMC_FIG4
from robustloss.reproduce.mmc_tables import MMC_TABLE2, MMC_TABLE3, MMC_TABLE4, MMC_TABLE5
from robustloss.reproduce.pc import PC_FIG2, PC_GAP, PC_MASKING, PC_TABLE1, PC_TABLE2, PC_TABLE3, PC_TABLE5
from robustloss.reproduce.pc_tsne import PC_FIG3
from robustloss.reproduce.reproducibility_report import RR_RECIPES

#: ``pc-mnist-table1`` of :mod:`~robustloss.reproduce.legacy` is replaced by ``pc-table1`` (an alias below)
RECIPES: dict[str, Recipe] = {r.name: r for r in (*(r for r in LEGACY if r.name != "pc-mnist-table1"), MMC_TABLE1,
                                                  MMC_TABLE2, MMC_TABLE3, MMC_TABLE4, MMC_TABLE5, MMC_CENTERS,
                                                  MMC_FIG3A, MMC_FIG3B, MMC_FIG4,
                                                  PC_TABLE1, PC_TABLE2, PC_TABLE3, PC_TABLE5, PC_GAP, PC_FIG2, PC_MASKING,
                                                  *RR_RECIPES,
                                                  *ISCE_RECIPES,
                                                  PC_FIG3,
                                                  )}
#: old names: alias -> (recipe, the scale it stands for; ``None``: any scale, the recipe's default unless given)
ALIASES: dict[str, tuple[str, str | None]] = {"cifar10-table1": ("mmc-table1", "paper"),
                                              "pc-mnist-table1": ("pc-table1", None)}

__all__ = ["ALIASES", "RECIPES", "SCALES", "Recipe", "list_recipes", "reproduce", "reproduce_all", "resolve"]


def resolve(name: str, scale: str | None) -> tuple[Recipe, str]:
    """The recipe called ``name`` (or an alias) and the scale to run (``scale``, else the recipe's default)."""
    if name in ALIASES:
        target, alias_scale = ALIASES[name]
        if alias_scale is not None and scale is not None and scale != alias_scale:
            raise UserError(f"{name} is {target} --scale {alias_scale}; run '{target} --scale {scale}' instead")
        name, scale = target, alias_scale if alias_scale is not None else scale
    if name not in RECIPES:
        raise unknown_choice("recipe", name, [*RECIPES, *ALIASES, "all"])
    recipe = RECIPES[name]
    scale = check_scale(scale if scale is not None else recipe.default_scale)
    if scale not in recipe.plans:
        raise UserError(f"recipe {recipe.name} has no {scale} scale; valid scales: {', '.join(recipe.scales)}")
    return recipe, scale


def reproduce(name: str, out: str | Path | None = None, *, scale: str | None = None, runs: str | Path | None = None,
              device: str = "auto", epochs: int | None = None, n_eval: int | None = None,
              data_dir: str | None = None, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run recipe ``name`` at ``scale`` into ``out`` (default ``results/NAME``); returns its results.

    Training runs go to the shared cache ``runs`` (default: ``runs/`` next to ``out``).
    """
    recipe, scale = resolve(name, scale)
    check_n(n_eval)
    out_dir = Path(out) if out is not None else Path("results") / recipe.name
    runs_dir = Path(runs) if runs is not None else out_dir.resolve().parent / "runs"
    ctx = Context(recipe.name, scale, out_dir, runs_dir, device=device, data_dir=data_dir, progress=progress,
                  force=force, epochs=epochs, n=n_eval)
    return run_recipe(recipe, ctx)


def reproduce_all(scale: str = "cpu", out: str | Path = "results", **options: Any) -> tuple[str, bool]:
    """Every recipe that has ``scale``, into ``out/NAME``; writes ``out/index.md``; returns it and overall success."""
    check_scale(scale)
    root = Path(out)
    rows: list[list[str]] = []
    ok = True
    index = ""
    for recipe in RECIPES.values():
        if scale not in recipe.plans:
            rows.append([recipe.name, ", ".join(recipe.experiments), "-", f"no {scale} scale"])
        else:
            start = time.perf_counter()
            try:
                reproduce(recipe.name, root / recipe.name, scale=scale, runs=root / "runs", **options)
                status = f"[report]({recipe.name}/report.md)"
            except UserError as exc:   # one broken recipe (e.g. missing CIFAR files) does not stop the others
                ok = False
                status = f"failed: {exc}"
                print(f"robustloss: error in {recipe.name}: {exc}", file=sys.stderr)
            rows.append([recipe.name, ", ".join(recipe.experiments), f"{time.perf_counter() - start:.0f} s", status])
        index = (f"# Reproductions at `{scale}` scale\n\n`robustloss reproduce all --scale {scale}`. Wall times "
                 "include training unless a run was already in the shared cache (`runs/`).\n\n"
                 + markdown_table(["recipe", "experiments", "wall time", "report"], rows))
        atomic_write_text(root / "index.md", index)   # after every recipe: a killed run still leaves an index
    return index, ok


def list_recipes() -> str:
    """Each recipe: its experiment IDs, and per scale what runs and how long it takes."""
    lines = []
    for recipe in RECIPES.values():
        aliases = [a for a, (t, _) in ALIASES.items() if t == recipe.name]
        lines.append(f"{recipe.name}{' (alias: ' + ', '.join(aliases) + ')' if aliases else ''}: {recipe.title} "
                     f"[{', '.join(recipe.experiments)}]")
        for scale in recipe.scales:
            default = " (default)" if scale == recipe.default_scale else ""
            lines.append(f"  {scale}{default}: {recipe.plans[scale]}; time: {recipe.times.get(scale, 'unknown')}")
    return "\n".join(lines) + "\n"
