"""Adversarial attacks, each adaptive to the objective of the model it attacks.

Every attack is built with the model and its parameters and called as
``attack(x, y, targets=None) -> x_adv``; see :mod:`robustloss.attacks.base`.
"""

from __future__ import annotations

from robustloss.attacks.base import Attack, IterativeAttack, eval_mode, random_targets
from robustloss.attacks.losses import NAMED_LOSSES, AttackLoss, ModelOutput, resolve_loss
from robustloss.attacks.pgd import PGD
from robustloss.registry import Registry

ATTACKS: Registry[Attack] = Registry("attack", skip=("model",))
ATTACKS.add("pgd", PGD)

__all__ = ["ATTACKS", "Attack", "AttackLoss", "IterativeAttack", "ModelOutput", "NAMED_LOSSES", "PGD",
           "eval_mode", "random_targets", "resolve_loss"]
