"""Training: configs, the loop with atomic checkpoints and exact resume, adversarial training.

Run folders (config + checkpoint on disk, :func:`robustloss.runs.train_run`) sit one layer up.
"""

from __future__ import annotations

from robustloss.training.config import AdversarialConfig, TrainConfig
from robustloss.training.trainer import Trainer, TrainingDiverged, build_classifier

__all__ = ["AdversarialConfig", "TrainConfig", "Trainer", "TrainingDiverged", "build_classifier"]
