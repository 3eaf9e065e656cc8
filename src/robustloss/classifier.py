"""``Classifier(backbone, objective)``: a plain ``nn.Module`` returning logits."""

from __future__ import annotations

from torch import Tensor, nn

from robustloss.objectives.base import AttackLossForm, Objective


class Classifier(nn.Module):
    """Backbone (``x -> z``) followed by an objective's head (``z -> logits``).

    ``forward(x)`` returns the objective's prediction logits, so any attack
    library can attack the model; :meth:`features` exposes ``z`` and
    :meth:`attack_loss` the objective's adaptive loss on inputs.
    """

    def __init__(self, backbone: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.backbone = backbone
        self.objective = objective

    def features(self, x: Tensor) -> Tensor:
        """The feature vector ``z = Z(x)``, shape ``(N, d)``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.objective.logits(self.backbone(x))

    def loss(self, x: Tensor, labels: Tensor) -> Tensor:
        """Training loss of the objective on inputs ``x``."""
        return self.objective.loss(self.backbone(x), labels)

    def attack_loss(self, x: Tensor, labels: Tensor, targets: Tensor | None = None,
                    form: AttackLossForm = "ce") -> Tensor:
        """Per-example adaptive attack loss (to maximise) on inputs ``x``."""
        return self.objective.attack_loss(self.backbone(x), labels, targets, form)
