"""Momentum iterative method, MIM (Dong et al. 2018), L-inf and L2."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustloss.attacks.base import IterativeAttack, normalize_grad
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import check_range


class MIM(IterativeAttack):
    """MIM: iterative gradient steps along an accumulated, L1-normalised momentum.

    Update rule (Dong et al. 2018, "Boosting adversarial attacks with momentum",
    Algorithm 1)::

        g_0 = 0
        g_{t+1} = mu * g_t + grad L(x_t) / ||grad L(x_t)||_1
        x_{t+1} = clip_[lo,hi](x + Proj_{B(0, eps)}(x_t + step_size * dir(g_{t+1}) - x))

    with ``dir`` = ``sign`` for ``norm="linf"`` and ``g / ||g||_2`` for ``norm="l2"``
    (the L2 variant of the paper).  Implemented through the shared core's
    :meth:`init_state` / :meth:`direction` hooks.  The MMC paper (Sec. 2.2,
    4.4) uses MIM as its transfer attack; the PC paper in white-box and transfer.

    Defaults: ``decay`` (mu) ``= 1.0`` (Dong et al. 2018); ``eps`` required (0.3
    on MNIST in the PC paper's Table 1); ``steps=40`` (the PC paper, "Performance
    on white-box attacks": "40 for MIM and PGD"); ``step_size=None`` means
    ``eps / steps`` (Dong et al.'s ``alpha = eps / T``; the PC paper uses 0.01);
    no random start (Dong et al.), which can be switched on together with
    ``restarts``.
    """

    name = "mim"

    def __init__(self, model: nn.Module, eps: float, steps: int = 40, step_size: float | None = None,
                 decay: float = 1.0, *, norm: str = "linf", random_start: bool = False, restarts: int = 1,
                 loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, eot: int = 1) -> None:
        super().__init__(model, eps, steps, step_size, norm=norm, random_start=random_start, restarts=restarts,
                         loss=loss, targeted=targeted, bounds=bounds, seed=seed, eot=eot)
        self.decay = check_range("decay", decay, low=0.0)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "decay": self.decay}

    def init_state(self, x: Tensor) -> dict[str, Tensor]:
        return {"momentum": x.new_zeros(x.shape)}

    def direction(self, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        l1 = grad.flatten(1).abs().sum(dim=1).clamp_min(1e-12)
        state["momentum"] = self.decay * state["momentum"] + grad / l1.view(-1, *([1] * (grad.dim() - 1)))
        return normalize_grad(state["momentum"], self.norm)

