"""Basic iterative method, BIM (Kurakin, Goodfellow & Bengio 2017), L-inf and L2."""

from __future__ import annotations

from torch import nn

from robustloss.attacks.base import IterativeAttack
from robustloss.attacks.losses import AttackLoss


class BIM(IterativeAttack):
    """BIM ("iterative FGSM"): PGD from the clean point, without random start.

    Update rule: ``x_0 = x``,
    ``x_{k+1} = clip_[lo,hi](x + Proj_{B(0, eps)}(x_k + step_size * dir(grad L(x_k)) - x))``
    with ``dir`` = ``sign`` (L-inf, Kurakin et al. 2017) or ``g / ||g||_2`` (L2).
    Deterministic, so it has no restarts.  For every example the first iterate
    that fools the model is kept (shared core).

    Defaults: ``eps`` required (0.3 is the MNIST L-inf budget of the PC paper's
    Table 1 and of the MMC paper's Fig. 3(b)); ``steps=10`` as in the PC paper's
    white-box settings ("Performance on white-box attacks": "10 for BIM");
    ``step_size=None`` means ``eps / steps`` (the whole budget is reachable).
    The PC paper uses a fixed ``step_size=0.01`` - pass it to reproduce its
    table (with 10 steps it can only reach an L-inf distance of 0.1).
    """

    name = "bim"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, step_size: float | None = None, *,
                 norm: str = "linf", loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, eot: int = 1) -> None:
        super().__init__(model, eps, steps, step_size, norm=norm, random_start=False, restarts=1, loss=loss,
                         targeted=targeted, bounds=bounds, seed=seed, eot=eot)
