"""robustloss: training objectives and adaptive attacks for adversarial-robustness research.

Data -> backbone (features ``z``) -> objective (head, loss, logits, adaptive
attack losses).  ``Classifier(backbone, objective)`` is a plain ``nn.Module``
returning logits.
"""

from __future__ import annotations

from robustloss.centers import mm_centers
from robustloss.classifier import Classifier
from robustloss.errors import UserError

__version__ = "0.1.0"


def load_run(run_dir: str, device: str = "cpu") -> Classifier:
    """The trained :class:`Classifier` of a run folder, in eval mode."""
    from robustloss.training.run import load_run as _load_run

    return _load_run(run_dir, device=device)


__all__ = ["Classifier", "UserError", "__version__", "load_run", "mm_centers"]
