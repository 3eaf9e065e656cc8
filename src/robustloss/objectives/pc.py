"""Probabilistically compact (PC) loss with logit constraints, seed 004 Eqs. (6) and (16)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustloss.errors import UserError, check_range, unknown_choice
from robustloss.objectives.sce import SCE

PC_REDUCTIONS: tuple[str, ...] = ("sum", "mean")
CONSTRAINTS: tuple[str, ...] = ("hard", "soft")


class PC(SCE):
    """PC loss with logit constraints (seed 004, Eqs. 6 and 16) on a linear head.

    With logits ``a = W z + b`` and probabilities ``f = softmax(a)``::

        L_pc = 1/N sum_i sum_{y' != y_i} max(0, f_{y'} + xi - f_{y_i})          (Eq. 6)
        L    = L_pc + lam/N sum_i max(0, a_{y_i} - a_j),  j = argmax_{k != y_i} f_k   (Eq. 16)

    (Eq. 16's constant ``-C'`` has no gradient and is dropped.)  The logit
    constraint suppresses the logit gap to the most probable false class.

    Deviations of the authors' released code, offered as options:

    * ``pc_reduction="mean"``: their PC term divides the sum over false classes by
      ``K - 1`` (default ``"sum"``: Eq. 6);
    * ``constraint="soft"``: their logit constraint replaces the arg-max false class
      by softmax weights over the false logits,
      ``sum_{k != y} softmax_{k != y}(a)_k max(0, a_y - a_k)`` (default ``"hard"``: Eq. 16).

    Training recipe (seed 004, Sec. 5): warm up with CE for ``T`` epochs, then train
    with PC; ``warmup_epochs = T`` does this through :meth:`on_epoch_start`
    (``0`` = PC from the start).  Outside a training loop the loss is PC.

    Defaults ``xi = 0.995``, ``lam = 0.05`` (seed 004, Sec. 5); ``warmup_epochs = 0``
    is our choice (the seed uses ``T = 50`` on MNIST-like data, ``150`` otherwise,
    with ``2T`` epochs in total).  Prediction logits are ``a``; the adaptive attack
    losses are CE and the logit margin on ``a``.
    """

    name = "pc"

    def __init__(self, num_classes: int, feature_dim: int, xi: float = 0.995, lam: float = 0.05,
                 warmup_epochs: int = 0, pc_reduction: str = "sum", constraint: str = "hard") -> None:
        super().__init__(num_classes, feature_dim)
        self.xi = check_range("xi", float(xi), low=0.0, high=1.0, low_inclusive=False)
        self.lam = check_range("lam", float(lam), low=0.0)
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise UserError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = int(warmup_epochs)
        if pc_reduction not in PC_REDUCTIONS:
            raise unknown_choice("pc_reduction", pc_reduction, PC_REDUCTIONS)
        if constraint not in CONSTRAINTS:
            raise unknown_choice("constraint", constraint, CONSTRAINTS)
        self.pc_reduction = pc_reduction
        self.constraint = constraint
        #: ``True`` while in the CE warm-up (set by :meth:`on_epoch_start`)
        self.warming_up = False

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.warming_up = epoch < self.warmup_epochs

    def pc_term(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Eq. 6 per example: ``sum_{y' != y} max(0, f_{y'} + xi - f_y)`` (or its mean over ``y'``)."""
        prob = logits.softmax(dim=1)
        true = F.one_hot(labels, self.num_classes).bool()
        p_y = prob.gather(1, labels[:, None])
        hinge = (prob + self.xi - p_y).clamp_min(0.0).masked_fill(true, 0.0)
        out = hinge.sum(dim=1)
        return out / (self.num_classes - 1) if self.pc_reduction == "mean" else out

    def constraint_term(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Eq. 16's logit constraint per example: ``max(0, a_y - a_j)`` (or the soft version)."""
        true = F.one_hot(labels, self.num_classes).bool()
        a_y = logits.gather(1, labels[:, None])
        false_logits = logits.masked_fill(true, float("-inf"))
        gap = (a_y - logits).clamp_min(0.0)
        if self.constraint == "soft":
            weights = false_logits.softmax(dim=1)          # zero on the true class
            return (weights * gap.masked_fill(true, 0.0)).sum(dim=1)
        j = false_logits.argmax(dim=1, keepdim=True)       # most probable false class
        return gap.gather(1, j).squeeze(1)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        logits = self.logits(z)
        if self.warming_up:
            return F.cross_entropy(logits, labels)
        return (self.pc_term(logits, labels) + self.lam * self.constraint_term(logits, labels)).mean()

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, xi={self.xi:g}, lam={self.lam:g}, "
                f"warmup_epochs={self.warmup_epochs}, pc_reduction={self.pc_reduction}, "
                f"constraint={self.constraint}")

