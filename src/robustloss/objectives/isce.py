"""Inference-softmax cross-entropy (I-SCE), the I-SCE paper, Sec. 3.2."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from robustloss.errors import check_choice, check_range
from robustloss.objectives.base import Objective

NORMALIZE: tuple[str, ...] = ("logits", "features")


class ISCE(Objective):
    """I-SCE loss (the I-SCE paper, Sec. 3.2, Eq. 2 "inference softmax")::

        f      = normalize(W z + b)                       (L2-normalised logits, Sec. 3.2)
        P^I(y) = exp(s f_y + m) / (exp(s f_y + m) + sum_{j != y} exp(f_j))
        L      = -log P^I(y)

    i.e. CE on logits ``g`` with ``g_y = s f_y + m`` for the *true* class and
    ``g_j = f_j`` otherwise (``s >= 1`` scales, ``m > 0`` shifts the right class).

    Inference (Sec. 3.2): the same transform is applied to the *arg-max* class
    ``i = argmax_j f_j`` instead of the true class.  The prediction is unchanged
    whenever ``(s - 1) f_i + m > 0`` (the I-SCE paper, App. A.2), which always holds for
    ``s = 1``, ``m > 0``; for ``s > 1`` it can fail only when the top normalised
    logit is below ``-m / (s - 1)``.

    ``normalize="logits"`` (default) normalises the logit vector ``f(x)`` as Sec. 3.2
    states; ``normalize="features"`` instead normalises the feature ``z`` before an
    unnormalised linear head, the reading of Sec. 3.4 ("only normalizes the features
    but not the weights").

    Defaults ``s = 1``, ``m = 0.1``: the I-SCE paper, Sec. 4.1 ("we set s = 1 and m = 0.1").

    Adaptive attack losses: CE and logit margin on the *prediction-time* logits
    :meth:`logits` (the inference softmax with the arg-max class boosted).
    """

    name = "isce"

    def __init__(self, num_classes: int, feature_dim: int, s: float = 1.0, m: float = 0.1,
                 normalize: str = "logits") -> None:
        super().__init__(num_classes, feature_dim)
        self.s = check_range("s", s, low=1.0)
        self.m = check_range("m", m, low=0.0)
        self.normalize = check_choice("normalize", normalize, NORMALIZE)
        self.head = nn.Linear(feature_dim, num_classes)

    def normalized_logits(self, z: Tensor) -> Tensor:
        """``f``: the L2-normalised logits (or the logits of the normalised feature)."""
        if self.normalize == "features":
            return self.head(F.normalize(z, dim=1))
        return F.normalize(self.head(z), dim=1)

    def boost(self, f: Tensor, classes: Tensor) -> Tensor:
        """``f`` with ``f_c -> s f_c + m`` for class ``c = classes[n]`` of every row."""
        mask = F.one_hot(classes, self.num_classes).to(f.dtype)
        return f + mask * ((self.s - 1.0) * f + self.m)

    def logits(self, z: Tensor) -> Tensor:
        f = self.normalized_logits(z)
        return self.boost(f, f.detach().argmax(dim=1))

    def training_logits(self, z: Tensor, labels: Tensor) -> Tensor:
        """The logits of the training loss: the true class boosted."""
        return self.boost(self.normalized_logits(z), labels)

    def loss(self, z: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.training_logits(z, labels), labels)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, s={self.s:g}, m={self.m:g}, normalize={self.normalize}"

