"""Adversarial attacks, each adaptive to the objective of the model it attacks.

Every attack is built with the model and its parameters and called as
``attack(x, y, targets=None) -> x_adv``, or ``attack.run(x, y, targets=None) ->
AttackResult`` for success, distortion, predictions and queries too; see
:mod:`robustloss.attacks.base`.
"""

from __future__ import annotations

from robustloss.attacks.base import Attack, AttackResult, IterativeAttack, random_targets
from robustloss.attacks.losses import NAMED_LOSSES, AttackLoss, ModelOutput, resolve_loss
from robustloss.attacks.apgd import APGD
from robustloss.attacks.bim import BIM
from robustloss.attacks.corruptions import GaussianNoise, Rotation
from robustloss.attacks.cw import CarliniWagnerL2
from robustloss.attacks.deepfool import DeepFool
from robustloss.attacks.fgsm import FGSM
from robustloss.attacks.mim import MIM
from robustloss.attacks.multitarget import MultiTargetPGD
from robustloss.attacks.pgd import PGD
from robustloss.attacks.simba import SimBA
from robustloss.attacks.spsa import SPSA
from robustloss.attacks.transfer import TransferAttack
from robustloss.registry import Registry

ATTACKS: Registry[Attack] = Registry("attack", skip=("model",))
ATTACKS.add("pgd", PGD)
for _cls in (FGSM, BIM, MIM, APGD, MultiTargetPGD, GaussianNoise, Rotation, TransferAttack):
    ATTACKS.add(_cls.name, _cls)
ATTACKS.add("cw", CarliniWagnerL2)
ATTACKS.add("spsa", SPSA)
ATTACKS.add("deepfool", DeepFool)
ATTACKS.add("simba", SimBA)

__all__ = ["APGD", "ATTACKS", "Attack", "AttackLoss", "AttackResult", "BIM", "CarliniWagnerL2", "DeepFool", "FGSM",
           "GaussianNoise", "IterativeAttack", "MIM", "ModelOutput", "MultiTargetPGD", "NAMED_LOSSES", "PGD",
           "Rotation", "SPSA", "SimBA", "TransferAttack", "random_targets", "resolve_loss"]
