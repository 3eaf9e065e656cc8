"""Center loss (Wen et al. 2016), discussed in the MMC paper's Remark 2 and compared in its Table 1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustloss.errors import check_range
from robustloss.objectives.sce import SCE


class CenterLoss(SCE):
    """SCE jointly with the center loss: ``L_SCE + lam * L_Center`` (the MMC paper, Remark 2).

    ``L_Center(z, y) = 1/2 ||z - c_y||^2`` (Wen et al. 2016; the MMC paper, Remark 2),
    both terms averaged over the mini-batch (Wen et al. write both as sums over the
    batch, so their ratio, and hence ``lam``, is the same).

    The centers ``c`` are a buffer, *not* trained by the optimiser: after every
    optimiser step (:meth:`on_batch_end`) they move towards the batch features as
    in Wen et al. 2016 (their center update and Algorithm 1)::

        delta_c_j = sum_{i: y_i = j} (c_j - z_i) / (1 + n_j)
        c_j      <- c_j - alpha * delta_c_j

    with ``n_j`` the number of examples of class ``j`` in the batch (classes absent
    from the batch keep their center).  Centers start at zero (our choice).

    Defaults ``lam = 0.003`` and ``alpha = 0.5``: the values Wen et al. 2016 use in
    their face-recognition experiments; the MMC paper (Sec. 4.1) says it follows
    the original paper's settings.  The prediction head is the linear SCE head, so
    the adaptive attack losses are the softmax ones: CE and the logit margin on
    ``W z + b`` (the MMC paper makes its attacks adaptive only for MMC, Table 1).
    """

    name = "center"
    centers: Tensor

    def __init__(self, num_classes: int, feature_dim: int, lam: float = 0.003, alpha: float = 0.5) -> None:
        super().__init__(num_classes, feature_dim)
        self.lam = check_range("lam", lam, low=0.0)
        self.alpha = check_range("alpha", alpha, low=0.0, high=1.0, low_inclusive=False)
        self.register_buffer("centers", torch.zeros(num_classes, feature_dim))

    def center_loss(self, z: Tensor, labels: Tensor) -> Tensor:
        """``1/2 ||z - c_y||^2`` per example."""
        return 0.5 * (z - self.centers.to(z.dtype)[labels]).pow(2).sum(dim=1)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(z), labels) + self.lam * self.center_loss(z, labels).mean()

    @torch.no_grad()
    def on_batch_end(self, z: Tensor, labels: Tensor) -> None:
        """Wen et al.'s center update from the batch features."""
        centers = self.centers
        z = z.detach().to(centers.dtype)
        counts = torch.bincount(labels, minlength=self.num_classes).to(centers.dtype)
        diff_sum = torch.zeros_like(centers).index_add_(0, labels, centers[labels] - z)
        centers.sub_(self.alpha * diff_sum / (1.0 + counts)[:, None])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lam={self.lam:g}, alpha={self.alpha:g}"
