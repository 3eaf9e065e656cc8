"""Auto-PGD, APGD (Croce & Hein 2020), L-inf and L2, with the CE/adaptive or DLR loss."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.base import IterativeAttack, normalize_grad, project
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import UserError, check_range


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations ``w_j = ceil(p_j * steps)`` at which APGD may halve its step size.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``
    (Croce & Hein 2020, Sec. 3.2); only checkpoints in ``(0, steps)`` are kept.
    """
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if 0 < math.ceil(q * steps) < steps})


class APGD(IterativeAttack):
    """Auto-PGD: PGD with momentum and a step size adapted at checkpoints, keeping the best point.

    Update rule (Croce & Hein 2020, "Reliable evaluation of adversarial robustness
    with an ensemble of diverse parameter-free attacks", Algorithm 1), with
    ``P(v) = clip_[lo,hi](x + Proj_{B(0,eps)}(v - x))`` and ``dir`` = ``sign``
    (L-inf) or ``g / ||g||_2`` (L2)::

        x^(1)   = P(x^(0) + eta * dir(grad f(x^(0))))
        z^(k+1) = P(x^(k) + eta^(k) * dir(grad f(x^(k))))
        x^(k+1) = P(x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)))

    ``eta^(0) = 2 eps``; ``x_max`` / ``f_max`` track the highest loss seen.  At each
    checkpoint ``w_j`` (:func:`apgd_checkpoints`) the step size of an example is
    halved and its iterate reset to ``x_max`` if (1) the loss increased in fewer
    than ``rho * (w_j - w_{j-1})`` of the steps since the last checkpoint, or (2)
    neither its step size nor ``f_max`` changed since the last checkpoint.  All
    of this is per example.  ``steps`` counts gradient evaluations (as in PGD);
    ``step_size`` in :meth:`params` is the initial step ``2 eps``.

    Loss ``f``: ``loss="adaptive"`` (default; CE for softmax objectives, the
    objective's adaptive loss otherwise, the MMC paper, App. B.4), ``"ce"`` (APGD-CE of
    the paper), ``"dlr"`` (the scale-free difference-of-logits ratio, APGD-DLR;
    targeted: APGD-T) or any other loss of :mod:`robustloss.attacks.losses`.

    Like every gradient attack here, the first iterate fooling the model is kept,
    otherwise the highest-loss point ``x_max``; restarts run only on points still
    robust, each from a new random start.

    Defaults (Croce & Hein 2020): ``steps=100``, ``rho=0.75``, ``momentum``
    (alpha) ``= 0.75``, initial step ``2 eps``, random start (uniform in the ball,
    as in the authors' evaluation); ``eps`` is required (0.3 is the MNIST L-inf
    budget of the MMC paper, Fig. 3(b), and of the PC paper, Table 1).
    """

    name = "apgd"

    def __init__(self, model: nn.Module, eps: float, steps: int = 100, *, norm: str = "linf",
                 restarts: int = 1, rho: float = 0.75, momentum: float = 0.75, random_start: bool = True,
                 loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, eot: int = 1) -> None:
        super().__init__(model, eps, steps, 2.0 * check_range("eps", eps, low=0.0), norm=norm, random_start=random_start,
                         restarts=restarts, loss=loss, targeted=targeted, bounds=bounds, seed=seed, eot=eot)
        self.rho = check_range("rho", rho, low=0.0, high=1.0)
        self.momentum = check_range("momentum", momentum, low=0.0, high=1.0)
        self.checkpoints = apgd_checkpoints(self.steps)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "rho": self.rho, "momentum": self.momentum}

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        if self.loss_name == "dlr" and x.shape[0]:
            classes = self.forward(x[:1], overhead=True).logits.shape[1]
            need = 3 if targets is None else 4
            if classes < need:
                raise UserError(f"the DLR loss needs at least {need} classes "
                                f"({'targeted' if targets is not None else 'untargeted'}), the model has {classes}")
        return super().perturb(x, labels, targets)

    def run_restart(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        shape = (-1,) + (1,) * (x.dim() - 1)

        def proj(v: Tensor) -> Tensor:
            return self.clamp(x + project(v - x, self.eps, self.norm))

        x_cur = x.clone()
        if self.random_start:
            x_cur = self.clamp(x + self.random_start_noise(x))
        found = x_cur.clone()
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)

        def track(point: Tensor, logits: Tensor) -> None:
            if self.final_iterate:  # run every step; return the last iterate
                return
            hit = self.is_adversarial(logits, labels, targets) & ~fooled
            found[hit] = point[hit]
            fooled[hit] = True

        loss_cur, logits, grad = self.loss_and_grad(x_cur, labels, targets)
        track(x_cur, logits)
        x_best, loss_best, grad_best = x_cur.clone(), loss_cur.clone(), grad.clone()
        x_prev = x_cur.clone()
        eta = torch.full((n,), self.step_size, dtype=x.dtype, device=x.device)
        # state at the previous checkpoint
        last_checkpoint, eta_then, best_then = 0, eta.clone(), loss_best.clone()
        increases = torch.zeros(n, device=x.device)

        for k in range(self.steps):
            z = proj(x_cur + eta.view(shape) * normalize_grad(grad, self.norm))
            if k == 0:
                x_new = z
            else:
                a = self.momentum
                x_new = proj(x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev))
            last = k == self.steps - 1
            if last:  # the last iterate needs no gradient: `steps` gradient evaluations in all, as PGD
                loss_new, logits = self.loss_and_logits(x_new, labels, targets)
                grad_new = grad
            else:
                loss_new, logits, grad_new = self.loss_and_grad(x_new, labels, targets)
            track(x_new, logits)
            increases += (loss_new > loss_cur).to(increases.dtype)
            better = loss_new > loss_best
            x_best[better], loss_best[better], grad_best[better] = x_new[better], loss_new[better], grad_new[better]
            x_prev, x_cur, loss_cur, grad = x_cur, x_new, loss_new, grad_new
            if last or bool(fooled.all()):
                break
            if k + 1 in self.checkpoints:
                span = k + 1 - last_checkpoint
                stalled = increases < self.rho * span
                unchanged = (eta_then == eta) & (best_then == loss_best)
                reduce = stalled | unchanged
                eta[reduce] /= 2
                x_cur[reduce] = x_best[reduce]
                x_prev[reduce] = x_best[reduce]   # no momentum across a reset
                grad[reduce] = grad_best[reduce]
                loss_cur[reduce] = loss_best[reduce]
                last_checkpoint, eta_then, best_then = k + 1, eta.clone(), loss_best.clone()
                increases.zero_()

        if self.final_iterate:
            return x_cur, self.is_adversarial(self.loss_and_logits(x_cur, labels, targets)[1], labels, targets)
        found[~fooled] = x_best[~fooled]
        return found, fooled
