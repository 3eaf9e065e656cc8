"""Adversarial training (AT) for any objective.

PGD-k AT (Madry et al. 2018; the MMC paper, Sec. 4.1: 10 steps, eps = 8/255,
targeted "AT^tar" - here with random targets - or untargeted "AT^un"; the paper
gives no AT step size, 2/255 is that of its evaluation PGD, Sec. 4.3), where the
attack maximises the objective's *own* adaptive loss (so MMC is trained against
``L_MMC``-based PGD, not CE).  FGSM AT (the PC paper, "Combining with adversarial
training": FGSM with perturbations in [0.1, 0.3] on MNIST) draws, for every
batch, the FGSM radius uniformly from ``[eps_min, eps]`` (uniform: our reading).

``mix="adv"`` trains on adversarial examples only; ``mix="half"`` on the clean
batch and its adversarial copy together (1:1).  The training attack draws its
random starts and targets from its own generator, reseeded every epoch from
``(seed, epoch)`` - never shared with evaluation attacks, which have their own.
Examples are crafted with the model in eval mode (batch-norm running statistics),
then the model returns to training mode.  With ``TrainConfig.amp`` ("bf16" / "fp16")
the crafting forwards run under ``torch.autocast`` (losses in fp32); the training
step on the crafted batch stays fp32.  The parameters are *not* frozen
(``requires_grad_(False)``) while crafting: the attack asks autograd for the input
gradient only, which already skips the weight gradients, and freezing measured no
gain (BENCHMARKS.md, "Speed options").  The examples come from ``Attack.craft``, which
skips the forward passes that would only measure them.  PGD-AT trains on the *last* iterate of
every example (Madry et al.), not on the first one that fools the model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustloss.attacks.base import IterativeAttack
from robustloss.attacks.fgsm import FGSM
from robustloss.attacks.pgd import PGD
from robustloss.classifier import Classifier
from robustloss.training.config import AdversarialConfig

class TrainingAdversary:
    """Replaces a clean training batch by its adversarial version (or clean + adversarial)."""

    def __init__(self, cfg: AdversarialConfig, model: Classifier, amp: str | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.attack: IterativeAttack
        if cfg.method == "pgd":
            self.attack = PGD(model, cfg.eps, cfg.steps, cfg.step_size, random_start=cfg.random_start,
                              targeted=cfg.targeted, loss=cfg.loss, final_iterate=True)
        else:
            self.attack = FGSM(model, cfg.eps, targeted=cfg.targeted, loss=cfg.loss)
            self.attack.final_iterate = True
        self.attack.amp = amp   # TrainConfig.amp: the crafting forwards under autocast, the losses in fp32
        self.generator = torch.Generator().manual_seed(0)

    def reseed(self, generator: torch.Generator) -> None:
        """Use ``generator`` for all randomness from now on (called once per epoch)."""
        self.generator = generator

    def __call__(self, x: Tensor, y: Tensor, example_seeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The training batch for ``(x, y)``; ``example_seeds`` (one per row) give each example its own random
        start and target (used under DDP, so they do not depend on which rank holds the example)."""
        if self.cfg.method == "fgsm":
            u = float(torch.rand((), generator=self.generator))
            eps = self.cfg.eps_min + (self.cfg.eps - self.cfg.eps_min) * u
            self.attack.eps = self.attack.step_size = eps
        x_adv = self.attack.craft(x, y, generator=self.generator, example_seeds=example_seeds)
        if self.cfg.mix == "half":
            return torch.cat([x, x_adv]), torch.cat([y, y])
        return x_adv, y
