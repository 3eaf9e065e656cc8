"""robustloss: training objectives and adaptive attacks for adversarial-robustness research.

Data -> backbone (features ``z``) -> objective (head, loss, logits, adaptive
attack losses).  ``Classifier(backbone, objective)`` is a plain ``nn.Module``
returning logits.  Every subpackage is reachable from here
(``robustloss.attacks.PGD``, ``robustloss.objectives.OBJECTIVES``, ...); the
layers and what each module owns are in ``docs/architecture.md``.
"""

from __future__ import annotations

from robustloss import attacks, datasets, evaluation, models, objectives, runs, training
from robustloss.centers import mm_centers
from robustloss.classifier import Classifier
from robustloss.errors import UserError
from robustloss.runs import load_run

__version__ = "0.1.0"

__all__ = ["Classifier", "UserError", "__version__", "attacks", "datasets", "evaluation", "load_run", "mm_centers",
           "models", "objectives", "runs", "training"]
