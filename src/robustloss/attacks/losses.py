"""Attack losses: how an attack scores a model's output (to *maximise*).

Every attack takes an :class:`AttackLoss`; by default it is the *adaptive* loss
of the objective the model was trained with (seed 000, App. B.4), found
automatically when the model is a :class:`~robustloss.classifier.Classifier`.
A model from elsewhere (any ``nn.Module`` returning logits) gets the softmax
losses on its logits.  Named losses (``loss=`` on every attack, ``--loss`` on
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

from robustloss.classifier import Classifier
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


def forward(model: nn.Module, x: Tensor) -> ModelOutput:
    """One forward pass; features too when the model is a :class:`Classifier`."""
    if isinstance(model, Classifier):
        z = model.features(x)
        return ModelOutput(model.objective.logits(z), z)
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


def _objective_loss(model: nn.Module, form: AttackLossForm) -> AttackLoss:
    if isinstance(model, Classifier):
        objective = model.objective

        def loss(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
            assert out.features is not None
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


def resolve_loss(model: nn.Module, loss: str | AttackLoss | None, default: str = "adaptive") -> AttackLoss:
    """Turn ``loss`` (a name, a callable or ``None`` for ``default``) into an :class:`AttackLoss`."""
    if loss is None:
        loss = default
    if callable(loss):
        return loss
    if loss == "adaptive":
        return _objective_loss(model, "ce")
    if loss == "adaptive-margin":
        return _objective_loss(model, "margin")
    if loss == "ce":
        return _on_logits(lambda a, y, t: logit_attack_loss(a, y, t, "ce"))
    if loss == "margin":
        return _on_logits(lambda a, y, t: logit_attack_loss(a, y, t, "margin"))
    if loss == "dlr":
        return _on_logits(dlr_loss)
    raise unknown_choice("attack loss", str(loss), NAMED_LOSSES)
