"""Attack losses: how an attack scores a model's output (to *maximise*).

Every attack takes an :class:`AttackLoss`; by default it is the *adaptive* loss
of the objective the model was trained with (the MMC paper, App. B.4), found
automatically when the model is a :class:`~robustloss.classifier.Classifier` or
wraps one in a way :func:`~robustloss.classifier.locate_classifier` understands
(``nn.Sequential(preprocess, clf)``, ``nn.DataParallel``, DDP, ``torch.compile``);
any other wrapper around a ``Classifier`` is refused, never silently attacked
with plain CE.  A model from elsewhere (any ``nn.Module`` returning logits, with
no ``Classifier`` inside) gets the softmax losses on its logits.  Named losses (``loss=`` on every attack, ``--loss`` on
the CLI):

* ``"adaptive"`` - the objective's form-1 loss (CE for SCE, ``L_MMC(z,y)`` / ``-L_MMC(z,y_t)`` for MMC);
* ``"adaptive-margin"`` - the objective's form-2 (C&W margin) loss;
* ``"ce"`` - plain softmax cross-entropy on the logits, whatever the objective
  (the *non-adaptive* attack, kept for comparison);
* ``"margin"`` - the C&W margin on the logits;
* ``"dlr"`` - the scale-free difference-of-logits ratio (Croce & Hein 2020).

A user loss is any callable ``loss(out, labels, targets) -> per-example tensor``
where ``out`` is a :class:`ModelOutput`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from robustloss.classifier import Located, locate_classifier
from robustloss.errors import UserError, unknown_choice
from robustloss.objectives.base import AttackLossForm, logit_attack_loss


@dataclass
class ModelOutput:
    """What one forward pass of the attacked model gives an attack loss."""

    logits: Tensor
    #: the feature vector ``z`` when the model is a :class:`Classifier`, else ``None``
    features: Tensor | None = None


class AttackLoss(Protocol):
    """``loss(out, labels, targets) -> (N,)`` per-example values to maximise."""

    def __call__(self, out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor: ...


def forward(model: nn.Module, x: Tensor, located: Located | None = None) -> ModelOutput:
    """One forward pass of ``model``; with ``located`` (the model's :class:`Classifier`), features too."""
    if located is not None:
        z = located.classifier.features(located.prepare(x))
        return ModelOutput(located.classifier.objective.logits(z), z)
    out = model(x)
    if isinstance(out, (tuple, list)) or not isinstance(out, Tensor):
        raise UserError(f"the model returned a {type(out).__name__}; attacks expect a tensor of logits (N, classes)")
    if out.dim() != 2:
        raise UserError(f"the model returned shape {tuple(out.shape)}; attacks expect logits of shape (N, classes)")
    return ModelOutput(out, None)


def check_logits(logits: Tensor) -> None:
    """Refuse outputs that look like probabilities (rows in [0,1] summing to 1)."""
    with torch.no_grad():
        if logits.numel() and bool((logits >= 0).all() and (logits <= 1).all()) and \
                torch.allclose(logits.sum(dim=1), torch.ones_like(logits[:, 0]), atol=1e-4):
            raise UserError("the model seems to return probabilities (rows in [0,1] summing to 1); "
                            "attacks expect logits - remove the final softmax")


def dlr_loss(logits: Tensor, labels: Tensor, targets: Tensor | None = None) -> Tensor:
    """Difference-of-logits ratio (Croce & Hein 2020), to maximise; needs >= 3 classes (4 targeted).

    Untargeted: ``-(a_y - max_{j!=y} a_j) / (a_pi1 - a_pi3)``;
    targeted:   ``-(a_y - a_t) / (a_pi1 - (a_pi3 + a_pi4) / 2)``, with ``a_pi`` sorted logits.
    Invariant to shifting and scaling the logits.
    """
    sorted_logits, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, labels[:, None]).squeeze(1)
    eps = 1e-12
    if targets is None:
        others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
        return -(true - others) / (sorted_logits[:, 0] - sorted_logits[:, 2] + eps)
    target = logits.gather(1, targets[:, None]).squeeze(1)
    denom = sorted_logits[:, 0] - 0.5 * (sorted_logits[:, 2] + sorted_logits[:, 3]) + eps
    return -(true - target) / denom


def _objective_loss(located: Located | None, form: AttackLossForm) -> AttackLoss:
    if located is not None:
        objective = located.classifier.objective

        def loss(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
            if out.features is None:
                raise UserError("the adaptive loss needs the features z; compute the output with "
                                "robustloss.attacks.losses.forward(model, x, located)")
            return objective.attack_loss(out.features, labels, targets, form)
        return loss

    def logit_loss(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
        return logit_attack_loss(out.logits, labels, targets, form)
    return logit_loss


def _on_logits(fn: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> AttackLoss:
    def loss(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
        return fn(out.logits, labels, targets)
    return loss


NAMED_LOSSES = ("adaptive", "adaptive-margin", "ce", "margin", "dlr")


def uses_objective(loss: str | AttackLoss | None, default: str = "adaptive") -> bool:
    """Whether ``loss`` needs the objective (the adaptive named losses or a user callable, which gets ``z``)."""
    name = default if loss is None else loss
    return not isinstance(name, str) or name in ("adaptive", "adaptive-margin")


def locate_for(model: nn.Module, loss: str | AttackLoss | None, default: str = "adaptive") -> Located | None:
    """The model's :class:`Classifier` as an attack with ``loss`` sees it.

    A wrapper :func:`locate_classifier` cannot see through is refused only when
    the loss needs the objective; otherwise it is attacked on its logits.
    """
    try:
        return locate_classifier(model)
    except UserError:
        if uses_objective(loss, default):
            raise
        return None


def resolve_loss(located: Located | None, loss: str | AttackLoss | None, default: str = "adaptive") -> AttackLoss:
    """Turn ``loss`` (a name, a callable or ``None`` for ``default``) into an :class:`AttackLoss`.

    ``located`` is the attacked model's :class:`Classifier` (``None`` for a model without one).
    """
    if loss is None:
        loss = default
    if callable(loss):
        return loss
    if loss == "adaptive":
        return _objective_loss(located, "ce")
    if loss == "adaptive-margin":
        return _objective_loss(located, "margin")
    if loss == "ce":
        return _on_logits(lambda a, y, t: logit_attack_loss(a, y, t, "ce"))
    if loss == "margin":
        return _on_logits(lambda a, y, t: logit_attack_loss(a, y, t, "margin"))
    if loss == "dlr":
        return _on_logits(dlr_loss)
    raise unknown_choice("attack loss", str(loss), NAMED_LOSSES)
