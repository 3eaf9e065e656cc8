"""The objective interface: every training objective implements it.

An :class:`Objective` owns the output head (a linear layer, fixed centers,
trainable means ...) and turns the backbone's feature vector ``z`` into

* :meth:`Objective.loss` - the scalar training loss (batch mean);
* :meth:`Objective.logits` - prediction logits, ``argmax`` = predicted class;
* :meth:`Objective.attack_loss` - its *adaptive* attack losses (the MMC paper, App. B.4).

Sign convention for attack losses
---------------------------------
The MMC paper (App. B.4) writes the adaptive objectives ``L_Ada`` as quantities the
attacker *minimises*.  In this package every attack *maximises*
``attack_loss``; so ``attack_loss = -L_Ada``:

==============  =========================  =====================================
form, mode      MMC paper (B.4)            ``attack_loss`` (to maximise)
==============  =========================  =====================================
"ce", untarget  ``L_Ada^{un,1}``           ``-L_Ada^{un,1}``  (CE for SCE, L_MMC(z, y) for MMC)
"ce", target    ``L_Ada^{tar,1}``          ``-L_Ada^{tar,1}`` (-CE(., y_t), -L_MMC(z, y_t))
"margin", un.   ``L_Ada^{un,2}``           ``max_{j!=y} a_j - a_y``
"margin", tar.  ``L_Ada^{tar,2}``          ``a_t - max_{j!=t} a_j``
==============  =========================  =====================================

where ``a`` are the objective's *attack logits* (for MMC ``a_l = -L_MMC(z, l)``,
so the untargeted margin is exactly ``L_MMC(z,y) - L_MMC(z, y~) = -L_Ada^{un,2}``).
The targeted margin is the C&W form (Carlini & Wagner 2017), which is positive
iff the target is predicted; it equals the paper's ``L_MMC(z,y) - L_MMC(z,y_t)``
whenever the true class is the runner-up.  "ce" (form 1) is what PGD, MIM and
SPSA use; "margin" (form 2) is what C&W uses (the MMC paper, App. B.4).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor, nn

AttackLossForm = Literal["ce", "margin"]
ATTACK_LOSS_FORMS: tuple[str, ...] = ("ce", "margin")


def logit_margin(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """Per-example C&W margin on logits, to maximise.

    Untargeted: ``max_{j != y} a_j - a_y`` (> 0 iff misclassified).
    Targeted:   ``a_t - max_{j != t} a_j`` (> 0 iff the target is predicted).
    """
    ref = labels if targets is None else targets
    ref_logit = logits.gather(1, ref[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(ref, logits.shape[1]).bool(), float("-inf"))
    best_other = others.amax(dim=1)
    return best_other - ref_logit if targets is None else ref_logit - best_other


def logit_cross_entropy(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """Per-example CE attack loss, to maximise: ``CE(a, y)`` or ``-CE(a, t)``."""
    if targets is None:
        return F.cross_entropy(logits, labels, reduction="none")
    return -F.cross_entropy(logits, targets, reduction="none")


def logit_attack_loss(logits: Tensor, labels: Tensor, targets: Tensor | None,
                      form: AttackLossForm) -> Tensor:
    """The attack loss for a model known only by its logits (softmax-based default)."""
    if form == "ce":
        return logit_cross_entropy(logits, labels, targets)
    if form == "margin":
        return logit_margin(logits, labels, targets)
    raise ValueError(f"unknown attack loss form '{form}'; valid choices: {', '.join(ATTACK_LOSS_FORMS)}")


class Objective(nn.Module):
    """Base class of every training objective.

    Subclasses implement :meth:`logits` and :meth:`loss`.  The default attack
    losses are the softmax-based ones (CE and logit margin on :meth:`logits`);
    center-based objectives override :meth:`attack_loss` with the feature-space
    losses of the MMC paper, App. B.4.
    """

    #: registry name, e.g. ``"mmc"``
    name: ClassVar[str] = ""
    #: ``True`` for objectives whose classes are centers in feature space
    center_based: ClassVar[bool] = False

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)

    def logits(self, z: Tensor) -> Tensor:
        """Prediction logits ``(N, L)`` from features ``(N, d)``; argmax = class."""
        raise NotImplementedError  # abstract

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        """Scalar training loss (batch mean) from features and labels."""
        raise NotImplementedError  # abstract

    def forward(self, z: Tensor) -> Tensor:  # noqa: D102 - nn.Module hook
        return self.logits(z)

    def attack_logits(self, z: Tensor) -> Tensor:
        """Logits the margin attack losses are taken on (default: :meth:`logits`)."""
        return self.logits(z)

    def attack_loss(self, z: Tensor, labels: Tensor, targets: Tensor | None = None,
                    form: AttackLossForm = "ce") -> Tensor:
        """Per-example adaptive attack loss to *maximise* (see the module docstring)."""
        return logit_attack_loss(self.attack_logits(z), labels, targets, form)

    def on_batch_end(self, z: Tensor, labels: Tensor) -> None:
        """Hook after each optimiser step (e.g. center-loss center updates). Default: nothing."""

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Hook before training epoch ``epoch`` (0-based) of ``epochs`` (e.g. warm-up schedules)."""

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feature_dim={self.feature_dim}"
