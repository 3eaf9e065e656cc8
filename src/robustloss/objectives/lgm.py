"""Large-margin Gaussian mixture (L-GM) loss (Wan et al. 2018), compared in the MMC paper and the I-SCE paper."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustloss.errors import check_choice, check_range
from robustloss.objectives.base import Objective

COVARIANCES: tuple[str, ...] = ("identity", "diagonal")


class LGM(Objective):
    """L-GM loss (Wan et al. 2018, CVPR; a member of the g-SCE family of the MMC paper's Eq. 4).

    Features are modelled as a Gaussian mixture with trainable means ``mu_k`` and
    covariances ``Lambda_k`` (identity, or diagonal ``exp(log_var_k)``), equal priors::

        d_k    = 1/2 (z - mu_k)^T Lambda_k^{-1} (z - mu_k)
        a_k    = -d_k - 1/2 log|Lambda_k|                         (prediction logits)
        L_cls  = CE over a, with d_y replaced by (1 + alpha) d_y   (margin, training only)
        L_lkd  = d_y + 1/2 log|Lambda_y|                           (likelihood regulariser)
        L_GM   = L_cls + lam * L_lkd

    For ``covariance="identity"``, ``L_lkd = 1/2 ||z - mu_y||^2``.  Means start from
    a standard normal draw (our choice, as common re-implementations); log-variances
    start at 0.

    Defaults ``alpha = 0.1`` and ``lam = 0.1``: the authors' released CIFAR-100 layer
    configuration (``margin_mul`` starting at 0.1, ``center_coef`` 0.1; the authors
    grow alpha to 0.3 during training, which we do not); identity covariance as in
    that configuration (``update_sigma: false``).

    Prediction logits are ``a`` without the margin (log-posterior up to a constant);
    the adaptive attack losses are CE and the logit margin on them (L-GM is a
    softmax objective over quadratic logits).
    """

    name = "lgm"
    center_based = True

    def __init__(self, num_classes: int, feature_dim: int, alpha: float = 0.1, lam: float = 0.1,
                 covariance: str = "identity") -> None:
        super().__init__(num_classes, feature_dim)
        self.alpha = check_range("alpha", alpha, low=0.0)
        self.lam = check_range("lam", lam, low=0.0)
        self.covariance = check_choice("covariance", covariance, COVARIANCES)
        self.means = nn.Parameter(torch.randn(num_classes, feature_dim))
        if covariance == "diagonal":
            self.log_var = nn.Parameter(torch.zeros(num_classes, feature_dim))
        else:
            self.register_parameter("log_var", None)

    def class_centers(self) -> Tensor:
        """The current means ``mu``, ``(L, d)``."""
        return self.means

    def mahalanobis(self, z: Tensor) -> Tensor:
        """``d_k = 1/2 (z - mu_k)^T Lambda_k^{-1} (z - mu_k)`` for every class, ``(N, L)``."""
        diff = z[:, None, :] - self.means.to(z.dtype)[None, :, :]
        sq = diff.pow(2)
        if self.log_var is not None:
            sq = sq * torch.exp(-self.log_var.to(z.dtype))[None, :, :]
        return 0.5 * sq.sum(dim=-1)

    def half_log_det(self, dtype: torch.dtype) -> Tensor:
        """``1/2 log|Lambda_k|`` per class, ``(L,)`` (zero for identity covariance)."""
        if self.log_var is None:
            return torch.zeros(self.num_classes, dtype=dtype, device=self.means.device)
        return 0.5 * self.log_var.to(dtype).sum(dim=1)

    def logits(self, z: Tensor) -> Tensor:
        return -self.mahalanobis(z) - self.half_log_det(z.dtype)[None, :]

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        d = self.mahalanobis(z)
        hld = self.half_log_det(z.dtype)
        onehot = F.one_hot(labels, self.num_classes).to(z.dtype)
        margin_logits = -d * (1.0 + self.alpha * onehot) - hld[None, :]
        cls = F.cross_entropy(margin_logits, labels)
        lkd = d.gather(1, labels[:, None]).squeeze(1) + hld[labels]
        return cls + self.lam * lkd.mean()

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, alpha={self.alpha:g}, lam={self.lam:g}, "
                f"covariance={self.covariance}")
