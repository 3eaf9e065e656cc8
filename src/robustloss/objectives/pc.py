"""Probabilistically compact (PC) loss with logit constraints, the PC paper's Eqs. (6) and (16)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from robustloss.errors import UserError, check_range, unknown_choice
from robustloss.objectives.sce import SCE

#: the two forms of the PC loss and its logit constraint (``loss_form`` option)
LOSS_FORMS: tuple[str, ...] = ("paper", "authors")


class PC(SCE):
    """PC loss with logit constraints (the PC paper, Eqs. 6 and 16) on a linear head.

    With logits ``a = W z + b``, probabilities ``f = softmax(a)``, ``K`` classes and
    ``j = argmax_{k != y} f_k`` the most probable false class, ``loss_form`` picks:

    ``"paper"`` (default) - the paper's equations::

        L_pc = 1/N sum_i sum_{y' != y_i} max(0, f_{y'} + xi - f_{y_i})                 (Eq. 6)
        L    = L_pc + lam/N sum_i max(0, a_{y_i} - a_j)                               (Eq. 16)

      a sum over the ``K - 1`` false classes (Eq. 6, l.115) and the hard logit
      constraint ``d_{y_j} = max(0, a_y - a_j)`` on the single most probable false
      class (Eq. 16 and the definition of ``d_{y_j}``, l.169-171; ``j`` from
      l.131-133).  Eq. 16's constant ``-C'`` has no gradient and is dropped.

    ``"authors"`` - the authors' released code (the repository linked in the
    paper's abstract, l.12: ``hard_margin_loss.py`` and ``margin_loss_soft_logit.py``)::

        L_pc = 1/N sum_i 1/(K-1) sum_{y' != y_i} max(0, f_{y'} + xi - f_{y_i})
        L    = L_pc + lam/N sum_i sum_{k != y_i} w_k max(0, a_{y_i} - a_k),
               w = softmax over the false logits a_k, k != y_i (w_{y_i} = 0)

      i.e. the PC term averaged over the false classes (their code sums the hinge
      over all ``K`` classes, subtracts the true class's constant ``xi`` and divides
      by ``K - 1``) and a soft logit constraint whose softmax weights stand in for
      the arg-max ``j`` (gradients flow through the weights, as in their code).

    Why ``"paper"`` is the default: the papers are this package's specification,
    and the paper's Experiments (l.177) say the models are trained with "our method
    shown in Eqs. (6) and (16)".  ``"authors"`` is what the released code
    trains.  (Before this option existed the
    loss was the paper form, reachable as the authors' form through two separate
    options ``pc_reduction=mean`` and ``constraint=soft``; mixing them matches
    neither source, so one option now selects a whole form.)  The option is
    called ``loss_form``, not ``form``, because ``form`` already names the attack
    loss (:meth:`attack_loss`).

    Attack losses (inherited from :class:`SCE`, the same for both forms: the form
    changes training only, not the prediction logits ``a``): ``"ce"`` = ``CE(a, y)``,
    the standard loss of FGSM/BIM/PGD/MIM (the paper does not name its attack loss,
    l.183); ``"margin"`` =
    ``max_{k != y} a_k - a_y = a_j - a_y`` with Eq. 16's ``j`` (``argmax f = argmax a``
    over the false classes), so ``max(0, -margin)`` is exactly the paper's
    ``d_{y_j}``: the attacker maximises the margin, i.e. drives down the gap Eq. 16
    penalises.  The soft
    constraint weighs every false gap, so it is always ``>= d_{y_j}``.

    Training recipe (the PC paper, Experiments, l.177): warm up with CE for ``T``
    epochs, then train with PC; ``warmup_epochs = T`` does this through
    :meth:`on_epoch_start` (``0`` = PC from the start).  Outside a training loop the
    loss is PC.  Defaults ``xi = 0.995``, ``lam = 0.05`` (l.177); ``warmup_epochs = 0``
    is our choice (the paper uses ``T = 50`` on MNIST-like data, ``150`` otherwise,
    with ``2T`` epochs in total).
    """

    name = "pc"

    def __init__(self, num_classes: int, feature_dim: int, xi: float = 0.995, lam: float = 0.05,
                 warmup_epochs: int = 0, loss_form: str = "paper") -> None:
        super().__init__(num_classes, feature_dim)
        self.xi = check_range("xi", float(xi), low=0.0, high=1.0, low_inclusive=False)
        self.lam = check_range("lam", float(lam), low=0.0)
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
            raise UserError(f"warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
        self.warmup_epochs = int(warmup_epochs)
        if loss_form not in LOSS_FORMS:
            raise unknown_choice("loss_form", loss_form, LOSS_FORMS)
        self.loss_form = loss_form
        #: ``True`` while in the CE warm-up (set by :meth:`on_epoch_start`)
        self.warming_up = False

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.warming_up = epoch < self.warmup_epochs

    def pc_term(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Eq. 6 per example: ``sum_{y' != y} max(0, f_{y'} + xi - f_y)``; ``"authors"``: its mean over ``y'``."""
        prob = logits.softmax(dim=1)
        true = F.one_hot(labels, self.num_classes).bool()
        p_y = prob.gather(1, labels[:, None])
        hinge = (prob + self.xi - p_y).clamp_min(0.0).masked_fill(true, 0.0)
        out = hinge.sum(dim=1)
        return out / (self.num_classes - 1) if self.loss_form == "authors" else out

    def constraint_term(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Eq. 16's ``d_{y_j} = max(0, a_y - a_j)`` per example; ``"authors"``: the softmax-weighted version."""
        true = F.one_hot(labels, self.num_classes).bool()
        a_y = logits.gather(1, labels[:, None])
        false_logits = logits.masked_fill(true, float("-inf"))
        gap = (a_y - logits).clamp_min(0.0)
        if self.loss_form == "authors":
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
                f"warmup_epochs={self.warmup_epochs}, loss_form={self.loss_form}")
