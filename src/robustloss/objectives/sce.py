"""Softmax cross-entropy (SCE), the baseline of the MMC paper (Eq. 1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from robustloss.objectives.base import Objective


class SCE(Objective):
    """Softmax cross-entropy on a linear head (the MMC paper, Eq. 1).

    ``L_SCE(Z(x), y) = -log[exp(W_y^T z + b_y) / sum_l exp(W_l^T z + b_l)]``.
    Adaptive attack losses: CE (form "ce") and the logit margin (form "margin").
    """

    name = "sce"

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__(num_classes, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def logits(self, z: Tensor) -> Tensor:
        return self.head(z)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(z), labels)
