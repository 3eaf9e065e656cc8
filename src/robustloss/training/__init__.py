"""Training: configs, the loop with atomic checkpoints and exact resume, adversarial training."""

from __future__ import annotations

from robustloss.training.config import AdversarialConfig, TrainConfig
from robustloss.training.run import load_run, train_run
from robustloss.training.trainer import Trainer, TrainingDiverged, build_classifier

__all__ = ["AdversarialConfig", "TrainConfig", "Trainer", "TrainingDiverged", "build_classifier",
           "load_run", "train_run"]
