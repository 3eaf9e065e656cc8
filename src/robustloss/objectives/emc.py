"""Elastic Max-Mahalanobis center (EMC) loss, the MMC paper, App. B.3, Eq. (21)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustloss.errors import check_range
from robustloss.objectives.mmc import MMC


class EMC(MMC):
    """EMC loss (the MMC paper, App. B.3, Eq. 21)::

        L_EMC(Z(x), y) = 1/2 ||z - mu_y||^2 + 1/(2 alpha) ||mu_y - mu*_y||^2

    the joint negative log-likelihood of ``z | y, mu_y ~ N(mu_y, I)`` and the prior
    ``mu_y ~ N(mu*_y, alpha I)``.  ``mu*`` are the MM centers of norm ``c_mm``
    (buffer ``centers``); the trainable means ``mu`` (parameter ``means``) start at
    ``mu*`` and are trained by the optimiser with the network (note: the trainer's
    weight decay then also applies to them).  As ``alpha -> 0`` the prior pins
    ``mu`` to ``mu*`` and EMC becomes MMC.  ``half=False`` drops the 1/2 from both
    terms (as :class:`MMC`'s switch).

    Defaults: ``c_mm = 10`` (MMC-10, the MMC paper, Sec. 4.1); ``alpha = 1`` is our
    choice (the paper leaves EMC's experiments to future work).

    Prediction logits and adaptive attack losses are MMC's (the MMC paper, App. B.4), on
    the *current* means: ``a_l = -1/2 ||z - mu_l||^2``; form "ce" is
    ``1/2 ||z - mu_y||^2`` (untargeted) / ``-1/2 ||z - mu_t||^2`` (targeted).  The
    prior term does not depend on ``z`` and is left out of the attack losses.
    """

    name = "emc"

    def __init__(self, num_classes: int, feature_dim: int, alpha: float = 1.0, c_mm: float = 10.0,
                 half: bool = True) -> None:
        super().__init__(num_classes, feature_dim, c_mm=c_mm, half=half)
        self.alpha = check_range("alpha", alpha, low=0.0, low_inclusive=False)
        self.means = nn.Parameter(self.centers.detach().clone())

    def class_centers(self) -> Tensor:
        """The trainable means ``mu`` the features regress onto."""
        return self.means

    def prior_loss(self, labels: Tensor, dtype: torch.dtype) -> Tensor:
        """``s / alpha * ||mu_y - mu*_y||^2`` per example (``s = 1/2`` with ``half``)."""
        gap = self.means.to(dtype)[labels] - self.centers.to(dtype)[labels]
        return self.scale / self.alpha * gap.pow(2).sum(dim=1)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        return (self.per_example_loss(z, labels) + self.prior_loss(labels, z.dtype)).mean()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:g}"
