"""Multi-target PGD: targeted PGD towards each of the k most likely wrong classes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.base import IterativeAttack
from robustloss.attacks.losses import AttackLoss
from robustloss.classifier import Located
from robustloss.errors import check_int


def class_centers(located: Located | None) -> Tensor | None:
    """The class centers ``(L, d)`` of a center-based objective, else ``None``.

    Uses ``objective.class_centers()`` when the objective has it (MMC), else its
    ``centers`` buffer or parameter (MMLDA, ...).
    """
    if located is None or not getattr(located.classifier.objective, "center_based", False):
        return None
    objective = located.classifier.objective
    getter = getattr(objective, "class_centers", None)
    centers = getter() if callable(getter) else getattr(objective, "centers", None)
    return centers.detach() if isinstance(centers, Tensor) and centers.dim() == 2 else None


def _descending_rank(key: Tensor, tol: float) -> Tensor:
    """``argsort(key, descending)`` per row, treating values within ``tol`` as ties (stable)."""
    finite = key[torch.isfinite(key)]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    quantised = torch.round(key / max(scale * tol, 1e-30))
    return quantised.argsort(dim=1, descending=True, stable=True)


class MultiTargetPGD(IterativeAttack):
    """Multi-target PGD: an example is robust only if it survives a targeted PGD towards each of k classes.

    For every example the ``k`` target classes are, for a center-based objective
    (``model.objective.center_based``: MMC, MMLDA, ...), the ``k`` classes whose
    centers are nearest to the true class's center; ties (MM centers are all
    equidistant, the MMC paper, Sec. 3.3) are broken by the clean point's logits.  For
    any other model they are the ``k`` highest non-true logits at the clean point
    (as in the multi-targeted attack of Gowal et al. 2019 and APGD-T of Croce &
    Hein 2020).  Each run is the shared PGD core (update rule of
    :class:`~robustloss.attacks.pgd.PGD`) with the *targeted* loss towards that
    class (by default the objective's adaptive targeted loss, the MMC paper, App. B.4:
    ``-L_MMC(z, y_t)`` for MMC), and it succeeds as soon as an iterate is
    misclassified (any wrong class, not only the target).  Runs (``k`` targets x
    ``restarts``) are done one after the other on the points still robust; the
    first fooling iterate is returned, else the last iterate of the last run.

    Untargeted from the caller's view: it chooses its own targets.  Defaults:
    ``k=3``; ``steps=50`` and ``step_size=0.01`` as in the MNIST PGD setting of
    the MMC paper (Fig. 3(b): eps 0.3, step 0.01, 50 steps); ``eps`` is
    required; random start (Madry et al. 2018); ``step_size=None`` means
    ``eps / steps``.
    """

    name = "multitarget"

    def __init__(self, model: nn.Module, eps: float, steps: int = 50, step_size: float | None = 0.01,
                 k: int = 3, *, norm: str = "linf", random_start: bool = True, restarts: int = 1,
                 loss: str | AttackLoss | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                 seed: int = 0, eot: int = 1) -> None:
        super().__init__(model, eps, steps, step_size, norm=norm, random_start=random_start, restarts=restarts,
                         loss=loss, targeted=False, bounds=bounds, seed=seed, eot=eot)
        self.k = check_int("k (number of targets)", k, 1)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "k": self.k}

    def is_adversarial(self, logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        """Success of every run is a misclassification, whatever its target."""
        return logits.argmax(dim=1) != labels

    def choose_targets(self, x: Tensor, labels: Tensor) -> Tensor:
        """The ``(N, min(k, L-1))`` target classes of every example, most promising first."""
        logits = self.forward(x).logits.detach()
        num_classes = logits.shape[1]
        true = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, labels[:, None], True)
        by_logit = logits.masked_fill(true, float("-inf"))
        order = by_logit.argsort(dim=1, descending=True, stable=True)
        centers = class_centers(self.located)
        if centers is not None:
            centers = centers.to(device=logits.device, dtype=torch.float64)
            closeness = (-torch.cdist(centers, centers)[labels]).masked_fill(true, float("-inf"))
            # primary key: center distance (ties within 1e-4 relative); secondary: the clean logits
            order = order.gather(1, _descending_rank(closeness.gather(1, order), 1e-4))
        return order[:, :min(self.k, num_classes - 1)]

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        best = x.clone()
        if self.eps == 0 or x.shape[0] == 0:
            return best
        chosen = self.choose_targets(x, labels)
        todo = torch.arange(x.shape[0], device=x.device)
        for j in range(chosen.shape[1]):
            for _ in range(self.restarts):
                if todo.numel() == 0:
                    return best
                self.active_rows = todo
                adv, fooled = self.run_restart(x[todo], labels[todo], chosen[todo, j])
                best[todo] = adv
                todo = todo[~fooled]
        return best
