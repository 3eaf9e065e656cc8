"""Run folders: ``config.json``, ``checkpoint.pt``, ``log.jsonl`` and evaluation results.

A folder holds one run.  Training into a folder that holds a *different* run
is refused unless ``force`` (which starts over); training into one that holds
the *same* configuration needs ``resume`` (continue) or ``force``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from robustloss.classifier import Classifier
from robustloss.errors import UserError
from robustloss.io import atomic_write_json
from robustloss.training.checkpoint import CHECKPOINT, load_checkpoint
from robustloss.training.config import TrainConfig
from robustloss.training.trainer import Trainer, build_classifier

CONFIG = "config.json"


def read_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG})")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path} is not a valid run config: {exc}") from None


def prepare_run_dir(run_dir: str | Path, config: TrainConfig, *, resume: bool, force: bool) -> bool:
    """Make ``run_dir`` ready for ``config``; ``True`` if an existing run should be resumed."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path {run_dir} exists and is not a folder")
    existing = run_dir / CONFIG
    has_run = existing.is_file() or (run_dir / CHECKPOINT).exists()
    if has_run and force:
        for name in (CONFIG, CHECKPOINT, "log.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "eval", ignore_errors=True)
        has_run = False
    if has_run:
        old = read_config(run_dir) if existing.is_file() else None
        if old is not None and old.to_dict() != config.to_dict():
            raise UserError(f"{run_dir} holds a different run; choose another --out, "
                            "or pass --force to overwrite it")
        if not resume:
            raise UserError(f"{run_dir} already holds this run; pass --resume to continue it "
                            "or --force to start over")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG, config.to_dict())
    return has_run


def train_run(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False,
              device: str = "auto", progress: bool = True) -> Classifier:
    """Train ``config`` into ``run_dir`` (resuming when asked) and return the model in eval mode."""
    trainer = Trainer(config, run_dir, device=device, progress=progress)  # validates every hyperparameter
    do_resume = prepare_run_dir(run_dir, config, resume=resume, force=force)
    if do_resume:
        trainer.resume()
    return trainer.fit()


def load_run(run_dir: str | Path, device: str = "cpu") -> Classifier:
    """The trained :class:`Classifier` of ``run_dir``, in eval mode."""
    from robustloss.device import resolve_device

    config = read_config(run_dir)
    dev = resolve_device(device)
    state = load_checkpoint(Path(run_dir) / CHECKPOINT, map_location=dev)
    if state["config"] != config.to_dict():
        raise UserError(f"checkpoint in {run_dir} is from another configuration than its {CONFIG}")
    model = build_classifier(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint in {run_dir} does not fit the model: {str(exc).splitlines()[0]}") from None
    return model.to(dev).eval()


def run_is_complete(run_dir: str | Path) -> bool:
    """``True`` if ``run_dir`` holds a finished training run."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return False
    return bool(load_checkpoint(path).get("complete", False))
