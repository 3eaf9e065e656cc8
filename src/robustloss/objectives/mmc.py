"""Max-Mahalanobis center (MMC) loss, the MMC paper, Sec. 3.3, Eq. (8)."""

from __future__ import annotations

from torch import Tensor

from robustloss.centers import mm_centers
from robustloss.errors import check_range
from robustloss.objectives.base import AttackLossForm, Objective, logit_attack_loss


def squared_distances(z: Tensor, centers: Tensor) -> Tensor:
    """``||z_n - mu_l||^2`` for every example and center, shape ``(N, L)``."""
    diff = z[:, None, :] - centers[None, :, :]
    return diff.pow(2).sum(dim=-1)


class MMC(Objective):
    """MMC loss (the MMC paper, Eq. 8): ``L_MMC(Z(x), y) = 1/2 ||z - mu*_y||^2``.

    ``mu*`` are the Max-Mahalanobis centers of norm ``c_mm`` (Algorithm 1,
    :func:`robustloss.mm_centers`); they are a buffer and never trained.
    Default ``c_mm = 10`` ("MMC-10", the MMC paper, Sec. 4.1).

    ``half=True`` (default) keeps the paper's 1/2.  ``half=False`` is the
    authors' TF code, which minimises ``||z - mu*_y||^2`` without it (twice the
    gradient, so effectively twice the learning rate on the loss).

    Prediction logits: ``a_l = -s ||z - mu*_l||^2`` with ``s = 1/2`` (or 1 without
    the half), i.e. ``a_l = -L_MMC(z, l)``.  Adaptive attack losses (to maximise,
    the MMC paper, App. B.4): form "ce": ``L_MMC(z, y)`` untargeted, ``-L_MMC(z, y_t)``
    targeted; form "margin": C&W margin on ``a``.
    """

    name = "mmc"
    center_based = True
    centers: Tensor

    def __init__(self, num_classes: int, feature_dim: int, c_mm: float = 10.0,
                 half: bool = True, centers: Tensor | None = None) -> None:
        super().__init__(num_classes, feature_dim)
        self.c_mm = check_range("c_mm", c_mm, low=0.0, low_inclusive=False)
        #: the paper's 1/2 (``half`` option); not named ``half``, which is ``nn.Module.half()``
        self.with_half = bool(half)
        if centers is None:
            centers = mm_centers(num_classes, feature_dim, self.c_mm)
        if tuple(centers.shape) != (num_classes, feature_dim):
            raise ValueError(f"centers must have shape ({num_classes}, {feature_dim}), got {tuple(centers.shape)}")
        self.register_buffer("centers", centers.detach().clone().float())

    @property
    def scale(self) -> float:
        """Factor on the squared distance: 1/2 (paper, Eq. 8) or 1 (authors' code)."""
        return 0.5 if self.with_half else 1.0

    def class_centers(self) -> Tensor:
        """The centers features regress onto, ``(L, d)``."""
        return self.centers

    def distances(self, z: Tensor) -> Tensor:
        """``L_MMC(z, l)`` for every class ``l``: ``s ||z - mu_l||^2``, shape ``(N, L)``."""
        return self.scale * squared_distances(z, self.class_centers().to(z.dtype))

    def logits(self, z: Tensor) -> Tensor:
        return -self.distances(z)

    def per_example_loss(self, z: Tensor, labels: Tensor) -> Tensor:
        """``L_MMC(z, y)`` per example (Eq. 8)."""
        mu_y = self.class_centers().to(z.dtype)[labels]
        return self.scale * (z - mu_y).pow(2).sum(dim=1)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.per_example_loss(z, labels).mean()

    def attack_loss(self, z: Tensor, labels: Tensor, targets: Tensor | None = None,
                    form: AttackLossForm = "ce") -> Tensor:
        if form == "ce":
            if targets is None:
                return self.per_example_loss(z, labels)      # -L_Ada^{un,1}
            return -self.per_example_loss(z, targets)        # -L_Ada^{tar,1}
        return logit_attack_loss(self.logits(z), labels, targets, form)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c_mm={self.c_mm:g}, half={self.with_half}"
