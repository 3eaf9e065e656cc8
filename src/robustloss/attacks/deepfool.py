"""DeepFool, L2 (Moosavi-Dezfooli et al. 2016, "DeepFool: a simple and accurate method to fool
deep neural networks")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.base import Attack
from robustloss.errors import check_int, check_range


class DeepFool(Attack):
    r"""DeepFool-L2: iteratively cross the linearised nearest decision boundary.

    With ``a`` the attack logits (the objective's; for MMC ``a_l = -L_MMC(z, l)``,
    i.e. DeepFool linearises the form-2 margins ``a_k - a_y`` of the MMC
    paper, App. B.4), ``y`` the label and ``K`` the candidate classes (the
    ``candidates - 1`` classes with the largest clean logits other than ``y``),
    each iteration at the current point ``x_i``::

        f_k = a_k(x_i) - a_y(x_i),   w_k = grad_x f_k(x_i)
        k*  = argmin_{k in K} |f_k| / ||w_k||_2
        r_i = (|f_k*| / ||w_k*||_2 + 1e-4) * w_k* / ||w_k*||_2
        x_{i+1} = clip(x + (1 + overshoot) * sum_{j <= i} r_j)

    until the prediction differs from ``y`` or ``max_iter`` iterations were
    made (Moosavi-Dezfooli et al. 2016, Alg. 2, with their ``1e-4`` step
    padding, overshoot applied to the accumulated perturbation, and clipping
    to the bounds).  Batched: each iteration runs one forward pass on the
    examples not yet fooled and one backward pass per candidate class ``k``
    (for the whole batch), not a loop over images.

    Minimum-norm attack: examples still correctly classified after ``max_iter``
    iterations are returned unchanged (``success`` false in the
    :class:`AttackResult`); ``distortion`` is ``||x_adv - x||_2``.  Accuracy under
    a perturbation budget ``eps`` (the "L2-constrained DeepFool" of the I-SCE
    paper) is ``1 - (r.success & (r.distortion <= eps)).float().mean()`` over
    correctly classified inputs.

    Defaults: ``overshoot=0.02`` and ``candidates=10`` (all classes of MNIST /
    CIFAR-10) from Moosavi-Dezfooli et al. 2016, ``max_iter=50`` (the "DF 50" of
    the I-SCE paper's Tables 3 and 7; "DF 10" is ``max_iter=10``).

    Untargeted only: there is no ``targeted`` option (``targeted=...`` from the
    CLI or a run config is a :class:`~robustloss.errors.UserError`, and so is
    calling the attack with ``targets``).
    """

    name = "deepfool"
    default_loss = "adaptive-margin"
    minimum_norm = True
    norm = "l2"

    def __init__(self, model: nn.Module, *, overshoot: float = 0.02, max_iter: int = 50, candidates: int = 10,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        super().__init__(model, loss=None, targeted=False, bounds=bounds, seed=seed)
        self.overshoot = check_range("overshoot", overshoot, low=0.0)
        self.max_iter = check_int("max_iter", max_iter, 1)
        self.candidates = check_int("candidates", candidates, 2)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "overshoot": self.overshoot, "max_iter": self.max_iter,
                "candidates": self.candidates}

    def attack_logits(self, x: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(prediction logits, attack logits) of one forward pass (``rows``: as in :meth:`Attack.forward`)."""
        out = self.forward(x, rows)
        if self.located is not None and out.features is not None:
            return out.logits, self.located.classifier.objective.attack_logits(out.features)
        return out.logits, out.logits

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        n = x.shape[0]
        x_adv = x.clone()
        r_tot = torch.zeros_like(x)
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        if n == 0:
            return x_adv
        _, clean = self.attack_logits(x)
        k = min(self.candidates, clean.shape[1])
        others = clean.scatter(1, labels[:, None], float("-inf"))
        cand = others.topk(k - 1, dim=1).indices                   # (N, k-1), label excluded
        active = torch.arange(n, device=x.device)
        for it in range(self.max_iter + 1):
            with torch.enable_grad():
                xa = x_adv[active].detach().requires_grad_(True)
                logits, a = self.attack_logits(xa, active)
                hit = logits.detach().argmax(dim=1) != labels[active]
                fooled[active[hit]] = True
                if it == self.max_iter or bool(hit.all()):
                    break
                lab = labels[active]
                f = a.gather(1, cand[active]) - a.gather(1, lab[:, None])   # (A, k-1), <= 0 while not fooled
                grads = []
                for j in range(k - 1):
                    (g,) = torch.autograd.grad(f[:, j].sum(), xa, retain_graph=j < k - 2)
                    grads.append(g.detach())
            w = torch.stack(grads, dim=1)                                  # (A, k-1, *shape)
            w_norm = w.flatten(2).norm(dim=2)                              # (A, k-1)
            pert = f.detach().abs() / (w_norm + 1e-8)
            best = pert.argmin(dim=1)
            rows = torch.arange(len(active), device=x.device)
            w_best = w[rows, best]
            scale = (pert[rows, best] + 1e-4) / (w_norm[rows, best] + 1e-8)
            r = w_best * scale.view(-1, *([1] * (x.dim() - 1)))
            keep = ~hit
            active, r = active[keep], r[keep]
            r_tot[active] += r
            x_adv[active] = self.clamp(x[active] + (1 + self.overshoot) * r_tot[active])
        # successes are decided on sub-batches; confirm them on the returned batch itself
        fooled &= self.forward(x_adv).logits.argmax(dim=1) != labels
        x_adv[~fooled] = x[~fooled]
        return x_adv
