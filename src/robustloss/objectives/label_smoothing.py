"""Cross-entropy with label smoothing (Szegedy et al. 2016), compared in the I-SCE paper (Sec. 4)."""

from __future__ import annotations

from torch import Tensor

from robustloss.errors import check_range
from robustloss.objectives.sce import SCE


class LabelSmoothing(SCE):
    """CE against smoothed targets on a linear head (Szegedy et al. 2016, Sec. 7)::

        q_k = (1 - eps) [k = y] + eps / K
        L   = -sum_k q_k log softmax(W z + b)_k
            = (1 - eps) CE(a, y) + eps * mean_k(-log p_k)

    (the uniform distribution ``u(k) = 1/K`` over all ``K`` classes, as in Szegedy
    et al.; the I-SCE paper, Sec. 3.1, describes it as regressing the soft label).

    Default ``eps = 0.1``: Szegedy et al. 2016's value (ImageNet, Sec. 7).
    Prediction logits ``a = W z + b``; adaptive attack losses: CE (on the one-hot
    label, as an attacker would) and the logit margin on ``a``.
    """

    name = "label-smoothing"

    def __init__(self, num_classes: int, feature_dim: int, eps: float = 0.1) -> None:
        super().__init__(num_classes, feature_dim)
        self.eps = check_range("eps", eps, low=0.0, high=1.0, high_inclusive=False)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        log_p = self.logits(z).log_softmax(dim=1)
        nll = -log_p.gather(1, labels[:, None]).squeeze(1)
        uniform = -log_p.mean(dim=1)
        return ((1.0 - self.eps) * nll + self.eps * uniform).mean()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps:g}"
