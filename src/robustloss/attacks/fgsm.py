"""Fast gradient (sign) method, FGSM (Goodfellow et al. 2015), L-inf and L2."""

from __future__ import annotations

from torch import nn

from robustloss.attacks.base import IterativeAttack
from robustloss.attacks.losses import AttackLoss


class FGSM(IterativeAttack):
    """FGSM: one step of size ``eps`` from the clean point, no random start.

    Update rule: ``x_adv = clip_[lo,hi](x + eps * dir(grad_x L(x)))`` with ``dir`` =
    ``sign`` for ``norm="linf"`` (Goodfellow et al. 2015) and ``g / ||g||_2`` for
    ``norm="l2"`` (the "fast gradient method").  ``L`` is the objective's
    adaptive loss by default (the MMC paper, App. B.4); targeted mode steps towards the
    target (``L`` is then the targeted loss).  It is the one-step member of the
    shared :class:`~robustloss.attacks.base.IterativeAttack` core
    (``steps=1``, ``step_size=eps``, ``random_start=False``), so a clean point
    that is already misclassified is returned unchanged.

    ``eps`` has no default; on MNIST the papers use 0.3 (the largest FGSM budget
    of the PC paper's Table 1, which has 0.1-0.3; the MMC paper's MNIST setting,
    Fig. 3(b)).  The PC paper also uses FGSM (radius in [0.1, 0.3]) for
    adversarial training on MNIST ("Combining with adversarial training").
    """

    name = "fgsm"

    def __init__(self, model: nn.Module, eps: float, *, norm: str = "linf",
                 loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, eot: int = 1) -> None:
        super().__init__(model, eps, 1, None, norm=norm, random_start=False, restarts=1, loss=loss,
                         targeted=targeted, bounds=bounds, seed=seed, eot=eot)
