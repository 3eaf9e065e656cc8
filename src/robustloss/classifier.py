"""``Classifier(backbone, objective)``: a plain ``nn.Module`` returning logits.

Also what every layer above needs to *use* a classifier: :func:`eval_mode`,
batched :func:`predict`, and :func:`locate_classifier`, which finds our
``Classifier`` (and so its objective) inside the wrappers users put around it
(``nn.Sequential(normalize, clf)``, ``nn.DataParallel``, DDP, ``torch.compile``),
so attacks stay adaptive to the objective through them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustloss.errors import UserError
from robustloss.objectives.base import Objective


class Classifier(nn.Module):
    """Backbone (``x -> z``) followed by an objective's head (``z -> logits``).

    ``forward(x)`` returns the objective's prediction logits, so any attack
    library can attack the model; :meth:`features` exposes ``z`` (attacks use it
    with ``objective.attack_loss`` for the adaptive losses).
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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's mode on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def predict(model: nn.Module, x: Tensor, batch_size: int, device: torch.device | str | None = None) -> Tensor:
    """Predicted classes for ``x`` (on the CPU), in batches of ``batch_size``, in eval mode (modes restored).

    ``device`` is where the batches go (default: where ``x`` is).
    """
    preds = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            preds.append(model(xb if device is None else xb.to(device)).argmax(1).cpu())
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)


#: wrappers whose ``forward(x)`` is ``self.module(x)`` (the objective is looked up through them)
_TRANSPARENT: tuple[type[nn.Module], ...] = (nn.DataParallel, nn.parallel.DistributedDataParallel)


@dataclass(frozen=True)
class Located:
    """Where our :class:`Classifier` sits in a model: ``model(x) == classifier(prepare(x))``."""

    classifier: Classifier
    #: the input-side layers in front of the classifier (identity when there are none)
    prepare: Callable[[Tensor], Tensor]


def _identity(x: Tensor) -> Tensor:
    return x


def locate_classifier(model: nn.Module) -> Located | None:
    """Find our :class:`Classifier` in ``model``; ``None`` if ``model`` holds none.

    Understood: a ``Classifier``; ``nn.DataParallel`` / ``DistributedDataParallel``
    (``.module``); a ``torch.compile``-d module (``._orig_mod``); an
    ``nn.Sequential`` whose *last* layer is one of these (the layers before it
    are applied to the input first).  Any other module that holds a
    ``Classifier`` is refused with a :class:`UserError`: the adaptive loss needs
    to know how inputs reach the objective, and guessing would silently attack
    the wrong function.
    """
    if isinstance(model, Classifier):
        return Located(model, _identity)
    wrapped = getattr(model, "module", None)
    if isinstance(model, _TRANSPARENT) and isinstance(wrapped, nn.Module):
        return locate_classifier(wrapped)
    inner = getattr(model, "_orig_mod", None)   # torch.compile's OptimizedModule
    if isinstance(inner, nn.Module) and type(model).__name__ == "OptimizedModule":
        return locate_classifier(inner)
    if isinstance(model, nn.Sequential) and len(model) > 0:
        last = locate_classifier(model[-1])
        if last is not None:
            front = nn.Sequential(*list(model)[:-1])
            then = last.prepare
            return Located(last.classifier, _identity if len(front) == 0 else (lambda x: then(front(x))))
    path = next((name for name, sub in model.named_modules() if isinstance(sub, Classifier)), None)
    if path is None:
        return None
    raise UserError(
        f"the model ({type(model).__name__}) holds a robustloss Classifier at '{path}' but robustloss cannot tell "
        "how inputs reach it, so the objective's adaptive loss cannot be used; attack the Classifier itself "
        "(input-side layers first: nn.Sequential(preprocess, classifier)), or pass loss='ce' to attack the "
        "logits non-adaptively")
