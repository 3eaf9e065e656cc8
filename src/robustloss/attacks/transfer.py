"""Black-box transfer attacks: craft on a substitute model, evaluate on the target.

The MMC paper, Sec. 4.4 / Fig. 4 (PGD and MIM, untargeted, from each substitute
against each target), and the PC paper, "Performance on black-box attacks" (a
3-layer CNN substitute for LeNet-5, PGD and MIM).  A defence that is only robust
because its gradients are masked falls to transfer attacks, so a transfer attack
*weaker* than the white-box one is one of the gradient-masking checks of the PC
paper ("Identifying Gradient Masking").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.base import Attack, IterativeAttack
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import UserError, unknown_choice

#: attacks that can be crafted on a substitute (gradient attacks on the shared core)
TRANSFER_ATTACKS = ("apgd", "bim", "fgsm", "mim", "pgd")
#: options whose value is a model; suites and the command line name it (a run folder), see the evaluation engine
MODEL_OPTIONS = ("substitute_model",)


def build_crafting_attack(substitute: nn.Module, attack: str, params: Mapping[str, Any], *,
                          final_iterate: bool = True) -> IterativeAttack:
    """The gradient attack ``attack`` with ``params`` on ``substitute`` (its own adaptive loss by default).

    With ``final_iterate=True`` the attack runs every step on every example and
    returns the last iterate (APGD: the highest-loss one) instead of stopping at
    the first iterate that fools the *substitute*: a point just across the
    substitute's boundary rarely fools another model, so transfer attacks use
    the whole trajectory (the original PGD and MIM algorithms have no early
    stop either).  Restarts then add nothing.
    """
    from robustloss.attacks import ATTACKS

    if attack not in TRANSFER_ATTACKS:
        raise unknown_choice("transfer attack", attack, TRANSFER_ATTACKS)
    crafted = ATTACKS.build(attack, params, model=substitute)   # validates and types the options
    if not isinstance(crafted, IterativeAttack):   # TRANSFER_ATTACKS are all on the shared core
        raise TypeError(f"{attack} is not an iterative gradient attack")
    crafted.final_iterate = final_iterate
    return crafted


class TransferAttack(Attack):
    """Transfer attack: ``x_adv = A_substitute(x, y)``, to be evaluated on the target ``model``.

    ``A`` is a gradient attack (``attack="pgd"`` default, ``"mim"`` - the
    transfer attack of the MMC paper, Sec. 2.2 - or ``"fgsm"``, ``"bim"``, ``"apgd"``)
    built on ``substitute_model`` with the substitute's *own* adaptive loss
    (unless ``loss`` is given) and its update rule; the target model is never
    differentiated (it is only checked to return logits).  ``substitute_model``
    is a built model; in a suite or on the command line it names a training run
    folder, which the run-folder layer loads (:func:`robustloss.runs.evaluate_run`).
    ``final_iterate`` - see
    :func:`build_crafting_attack`.  Other keyword arguments (``decay``,
    ``random_start``, ...) go to the crafting attack.

    Defaults: ``eps`` is required (0.3 on MNIST in the PC paper's Table 3);
    ``steps=40`` (the PC paper's PGD and MIM iterations, "Performance on
    white-box attacks"; its black-box paragraph does not restate them);
    ``step_size=None`` means ``eps / steps`` (the PC paper uses 0.01).
    The MMC paper (Sec. 4.4) uses untargeted mode only (targeted examples transfer
    poorly); ``targeted=True`` is supported.
    """

    name = "transfer"

    def __init__(self, model: nn.Module, substitute_model: nn.Module, attack: str = "pgd", *,
                 eps: float, steps: int = 40, step_size: float | None = None, norm: str = "linf",
                 loss: str | AttackLoss | None = None, targeted: bool = False, final_iterate: bool = True,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, **attack_params: Any) -> None:
        super().__init__(model, loss="ce", targeted=targeted, bounds=bounds, seed=seed)   # the target is never differentiated
        if not isinstance(substitute_model, nn.Module):
            raise UserError("a transfer attack needs substitute_model: a built model (nn.Module); from the command "
                            f"line or a suite, a training run folder; got {type(substitute_model).__name__}")
        self.substitute = substitute_model
        self.norm = norm
        self.attack_name = attack
        self.final_iterate = bool(final_iterate)
        params: dict[str, Any] = {"eps": eps, "steps": steps, "step_size": step_size, "norm": norm,
                                  "targeted": targeted, "bounds": bounds, "seed": seed}
        if loss is not None:
            params["loss"] = loss
        if attack == "fgsm":   # one step of size eps: no steps / step size
            params.pop("steps")
            params.pop("step_size")
        elif attack == "apgd":  # adaptive step size
            params.pop("step_size")
        self.crafting = build_crafting_attack(self.substitute, attack, {**params, **attack_params},
                                              final_iterate=self.final_iterate)
        self.loss_name = self.crafting.loss_name

    def params(self) -> dict[str, Any]:
        inner = {k: v for k, v in self.crafting.params().items() if k not in ("seed", "targeted", "loss")}
        return {**super().params(), "attack": self.attack_name, "final_iterate": self.final_iterate,
                "substitute": type(self.substitute).__name__, **inner}

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        gens = self.row_generators()
        seeds = None if gens is None else torch.tensor([int(torch.randint(0, 2 ** 62, (), generator=g)) for g in gens])
        return self.crafting.run(x, labels, targets, example_seeds=seeds).adversarial
