"""Max-Mahalanobis linear discriminant analysis (MMLDA), the MMC paper's Eq. (10)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustloss.centers import mm_centers
from robustloss.errors import check_range
from robustloss.objectives.base import Objective


class MMLDA(Objective):
    """MMLDA loss (Pang et al. 2018; the MMC paper, Eq. 10).

    ``L = -log[exp(-||z - mu*_y||^2 / 2) / sum_l exp(-||z - mu*_l||^2 / 2)]``
    ``  = -log[exp(z^T mu*_y) / sum_l exp(z^T mu*_l)]`` (all ``||mu*_l|| = C_MM``).
    Logits ``z^T mu*_l`` (softmax-equivalent to the quadratic form).  A softmax
    objective, so its adaptive attack losses are CE and the logit margin.
    Default ``c_mm = 10`` as for MMC (the MMC paper, Sec. 4.1, uses the settings of
    Pang et al. 2018, whose cross-validated value is 10 for these datasets).
    """

    name = "mmlda"
    center_based = True
    centers: Tensor

    def __init__(self, num_classes: int, feature_dim: int, c_mm: float = 10.0) -> None:
        super().__init__(num_classes, feature_dim)
        self.c_mm = check_range("c_mm", c_mm, low=0.0, low_inclusive=False)
        self.register_buffer("centers", mm_centers(num_classes, feature_dim, self.c_mm).float())

    def logits(self, z: Tensor) -> Tensor:
        return z @ self.centers.to(z.dtype).T

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.logits(z), labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c_mm={self.c_mm:g}"
