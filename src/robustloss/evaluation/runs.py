"""Evaluate a trained run folder; results (and partial results) are written atomically.

Results go to ``RUN_DIR/eval/<name>.json`` and ``.md``.  After every attack the
per-example outcomes so far are saved to ``<name>.partial.json``; a killed
evaluation started again with the same settings skips the attacks already done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from robustloss import datasets
from robustloss.device import resolve_device
from robustloss.errors import UserError
from robustloss.evaluation import diagnostics
from robustloss.evaluation.engine import AttackResult, EvalResult, evaluate
from robustloss.evaluation.report import results_table
from robustloss.evaluation.suite import AttackSpec
from robustloss.io import atomic_write_json, atomic_write_text
from robustloss.training.run import load_run, read_config


def _settings(n: int, seed: int, worst_case: bool, split: str, suite: list[AttackSpec]) -> dict[str, Any]:
    """What a partial result must match to be reused.

    In worst-case mode an attack runs only on the survivors of the attacks before
    it, so the whole ordered suite is part of the settings.
    """
    out: dict[str, Any] = {"n": n, "seed": seed, "worst_case": worst_case, "split": split}
    if worst_case:
        out["order"] = [spec.key() for spec in suite]
    return out


def _load_partial(path: Path, settings: dict[str, Any], suite: list[AttackSpec]) -> dict[str, AttackResult]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    if data.get("settings") != settings:
        return {}
    by_key = {spec.key(): spec for spec in suite}
    out = {}
    for key, entry in data.get("done", {}).items():
        if key in by_key:
            dist = entry.get("distortion")
            distortion = None if dist is None else torch.tensor([float("nan") if d is None else d for d in dist])
            out[key] = AttackResult(by_key[key], torch.tensor(entry["robust"], dtype=torch.bool), entry["time_s"],
                                    entry["attacked"], distortion)
    return out


def evaluate_run(run_dir: str | Path, suite: list[AttackSpec], *, name: str, n: int | None = 1000,
                 split: str = "test", batch_size: int = 500, device: str = "auto", seed: int = 0,
                 worst_case: bool = False, data_dir: str | None = None, progress: bool = True,
                 diagnose: bool = False, diagnose_eps: float | None = None, reuse: bool = False) -> dict[str, Any]:
    """Evaluate the model of ``run_dir`` on the first ``n`` images of ``split``; returns the result dict.

    ``reuse=True`` returns an existing ``eval/NAME.json`` made with the same suite
    and settings instead of running it again (retraining with ``--force`` deletes
    ``eval/``, so such a file always belongs to the current weights).

    ``diagnose=True`` also runs the gradient-masking checks of
    :mod:`robustloss.evaluation.diagnostics` (after the suite) at ``diagnose_eps``
    (default: the suite's largest L-inf eps) and stores them under ``"diagnostics"``.
    """
    if n is not None and n < 1:
        raise UserError(f"number of evaluation points must be >= 1, got {n}")
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    config = read_config(run_dir)
    diag_eps = diagnostics.default_eps(suite, diagnose_eps) if diagnose else None  # fail before the attacks
    dev = resolve_device(device)
    model = load_run(run_dir, device=str(dev))
    x, y = datasets.load(config.dataset, split, data_dir if data_dir is not None else config.data_dir)
    if n is not None:
        x, y = x[:n], y[:n]
    out_dir = Path(run_dir) / "eval"
    partial_path = out_dir / f"{name}.partial.json"
    settings = _settings(len(x), seed, worst_case, split, suite)
    if reuse and not diagnose:
        previous = _finished(out_dir / f"{name}.json", settings, suite)
        if previous is not None:
            return previous
    cached = _load_partial(partial_path, settings, suite)
    done: dict[str, Any] = {}
    for key, res in cached.items():
        done[key] = _serialise(res)

    def save_partial(res: AttackResult) -> None:
        done[res.spec.key()] = _serialise(res)
        atomic_write_json(partial_path, {"settings": settings, "done": done})

    result: EvalResult = evaluate(model, x, y, suite, batch_size=batch_size, device=dev, seed=seed,
                                  worst_case=worst_case, progress=progress, cached=cached, on_result=save_partial)
    summary = {"run": str(run_dir), "config": config.to_dict(), "suite": name,
               **{k: v for k, v in settings.items() if k != "order"}, **result.to_dict()}
    report = results_table({Path(run_dir).name: summary})
    if diag_eps is not None:
        diag_n = min(len(x), diagnostics.DEFAULT_N)
        checks = diagnostics.diagnose(model, x, y, eps=diag_eps, n=diag_n, batch_size=batch_size, device=dev,
                                      seed=seed)
        summary["diagnostics"] = diagnostics.summary(checks, eps=diag_eps, n=diag_n)
        report += diagnostics.markdown(summary["diagnostics"])
    atomic_write_json(out_dir / f"{name}.json", summary)
    atomic_write_text(out_dir / f"{name}.md", report)
    partial_path.unlink(missing_ok=True)
    return summary


def _finished(path: Path, settings: dict[str, Any], suite: list[AttackSpec]) -> dict[str, Any] | None:
    """The summary at ``path`` if it was made with ``settings`` and exactly ``suite``, else ``None``."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    same = all(data.get(k) == v for k, v in settings.items() if k != "order")
    specs = [(a.get("label"), a.get("attack"), a.get("params")) for a in data.get("attacks", [])]
    return data if same and specs == [(s.label, s.attack, s.params) for s in suite] else None


def _serialise(res: AttackResult) -> dict[str, Any]:
    return {"robust": res.robust.tolist(), "time_s": res.time_s, "attacked": res.attacked,
            "distortion": None if res.distortion is None else res.distortion.tolist()}
