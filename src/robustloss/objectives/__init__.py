"""Training objectives: each owns the output head, the training loss, the
prediction logits and its own adaptive attack losses (:class:`Objective`).

Choose one by name with :func:`build_objective`; ``OBJECTIVES.names()`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustloss.objectives.base import (ATTACK_LOSS_FORMS, AttackLossForm, Objective,
                                        logit_attack_loss, logit_cross_entropy, logit_margin)
from robustloss.objectives.arcface import ArcFace
from robustloss.objectives.center import CenterLoss
from robustloss.objectives.emc import EMC
from robustloss.objectives.gce import GCE
from robustloss.objectives.hmmc import HMMC
from robustloss.objectives.isce import ISCE
from robustloss.objectives.label_smoothing import LabelSmoothing
from robustloss.objectives.lgm import LGM
from robustloss.objectives.mmc import MMC
from robustloss.objectives.mmc_rand import MMCRand
from robustloss.objectives.mmlda import MMLDA
from robustloss.objectives.pc import PC
from robustloss.objectives.sce import SCE
from robustloss.registry import Registry

OBJECTIVES: Registry[Objective] = Registry("objective", skip=("num_classes", "feature_dim", "centers"))
_ALL: tuple[type[Objective], ...] = (SCE, MMC, MMLDA, CenterLoss, LGM, MMCRand, EMC, HMMC, ISCE, PC, GCE, ArcFace,
                                     LabelSmoothing)
for _cls in _ALL:
    OBJECTIVES.add(_cls.name, _cls)


def build_objective(name: str, num_classes: int, feature_dim: int,
                    options: Mapping[str, Any] | None = None) -> Objective:
    """Build objective ``name`` with typed ``options`` (e.g. ``{"c_mm": "10"}``)."""
    return OBJECTIVES.build(name, options, num_classes=num_classes, feature_dim=feature_dim)


__all__ = ["ATTACK_LOSS_FORMS", "AttackLossForm", "MMC", "MMLDA", "OBJECTIVES", "Objective", "SCE",
           "build_objective", "logit_attack_loss", "logit_cross_entropy", "logit_margin"]
__all__ += ["ArcFace", "CenterLoss", "EMC", "GCE", "HMMC", "ISCE", "LGM", "LabelSmoothing", "MMCRand", "PC"]
