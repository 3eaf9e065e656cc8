"""Black-box transfer attacks: craft on a substitute model, evaluate on the target.

Seed 000 Sec. 4.4 / Fig. 4 (PGD and MIM, untargeted, from each substitute
against each target) and seed 004 (a 3-layer CNN substitute for LeNet-5, PGD
and MIM).  A defence that is only robust because its gradients are masked falls
to transfer attacks, so a transfer attack *weaker* than the white-box one is one
of the gradient-masking checks of seed 004 ("Identifying gradient masking").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.base import Attack, IterativeAttack
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import UserError, unknown_choice
from robustloss.registry import parse_options

#: attacks that can be crafted on a substitute (gradient attacks on the shared core)
TRANSFER_ATTACKS = ("apgd", "bim", "fgsm", "mim", "pgd")


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
    assert isinstance(crafted, IterativeAttack)
    crafted.final_iterate = final_iterate
    return crafted


def _load_model(model: nn.Module | str | Path | None, what: str) -> nn.Module:
    if model is None:
        raise UserError(f"a transfer attack needs a {what} (a model or a training run folder)")
    if isinstance(model, (str, Path)):
        from robustloss.training.run import load_run

        return load_run(model)
    if not isinstance(model, nn.Module):
        raise UserError(f"the {what} must be an nn.Module or a run folder, got {type(model).__name__}")
    return model


class TransferAttack(Attack):
    """Transfer attack: ``x_adv = A_substitute(x, y)``, to be evaluated on the target ``model``.

    ``A`` is a gradient attack (``attack="pgd"`` default, ``"mim"`` - the
    transfer attack of seed 000 Sec. 2.2 - or ``"fgsm"``, ``"bim"``, ``"apgd"``)
    built on ``substitute_model`` with the substitute's *own* adaptive loss
    (unless ``loss`` is given) and its update rule; the target model is never
    differentiated (it is only checked to return logits).  ``substitute_model``
    may be a model or a training run folder (loaded with
    :func:`robustloss.training.run.load_run`).  ``final_iterate`` - see
    :func:`build_crafting_attack`.  Other keyword arguments (``decay``,
    ``random_start``, ...) go to the crafting attack.

    Defaults: ``eps=0.3``, ``steps=40`` (seed 004: 40 iterations for PGD and MIM
    on MNIST); ``step_size=None`` means ``eps / steps`` (seed 004 uses 0.01).
    Seed 000 Sec. 4.4 uses untargeted mode only (targeted examples transfer
    poorly); ``targeted=True`` is supported.
    """

    name = "transfer"

    def __init__(self, model: nn.Module, substitute_model: nn.Module | str | None = None, attack: str = "pgd",
                 eps: float = 0.3, steps: int = 40, step_size: float | None = None, *, norm: str = "linf",
                 loss: str | AttackLoss | None = None, targeted: bool = False, final_iterate: bool = True,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, **attack_params: Any) -> None:
        super().__init__(model, loss=None, targeted=targeted, bounds=bounds, seed=seed)
        self.substitute = _load_model(substitute_model, "substitute model")
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
        return self.crafting(x, labels, targets)


def parse_attack_spec(spec: str | Mapping[str, Any] | tuple[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``"mim:eps=0.3,steps=40"``, ``{"attack": "mim", "eps": 0.3}`` or ``("mim", {...})`` -> (name, params)."""
    if isinstance(spec, str):
        name, _, rest = spec.partition(":")
        return name.strip(), dict(parse_options([p for p in rest.split(",") if p.strip()]))
    if isinstance(spec, Mapping):
        params = dict(spec)
        if "attack" not in params:
            raise UserError("an attack spec mapping needs an 'attack' key, e.g. {'attack': 'mim', 'eps': 0.3}")
        return str(params.pop("attack")), params
    if isinstance(spec, tuple) and len(spec) == 2:
        return str(spec[0]), dict(spec[1])
    raise UserError(f"cannot read the attack spec {spec!r}; use 'NAME:key=value,...' or {{'attack': NAME, ...}}")


def transfer_matrix(substitutes: Mapping[str, nn.Module], targets: Mapping[str, nn.Module], x: Tensor, y: Tensor,
                    attack_spec: str | Mapping[str, Any] | tuple[str, Mapping[str, Any]] = "mim", *,
                    batch_size: int = 500, final_iterate: bool = True) -> dict[tuple[str, str], float]:
    """Accuracy of every target on the examples crafted on every substitute (seed 000 Fig. 4).

    Adversarial examples are crafted once per substitute (with its own adaptive
    loss, in batches of ``batch_size``) and evaluated on every target; the value
    for ``(substitute, target)`` is the target's accuracy on them (all points,
    whether or not the target classified the clean point correctly).  A
    substitute that is also a target gives the white-box number on the diagonal
    (of the full-length attack when ``final_iterate=True``).
    """
    from robustloss.evaluation.engine import predict  # evaluation builds on attacks, not the reverse

    name, params = parse_attack_spec(attack_spec)
    if x.shape[0] != y.shape[0]:
        raise UserError(f"x and y disagree in length: {x.shape[0]} vs {y.shape[0]}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    out: dict[tuple[str, str], float] = {}
    for sub_name, substitute in substitutes.items():
        crafting = build_crafting_attack(substitute, name, params, final_iterate=final_iterate)
        x_adv = torch.cat([crafting(x[i:i + batch_size], y[i:i + batch_size])
                           for i in range(0, x.shape[0], batch_size)]) if x.shape[0] else x.clone()
        for tgt_name, target in targets.items():
            correct = int((predict(target, x_adv, batch_size, x_adv.device) == y.cpu()).sum())
            out[(sub_name, tgt_name)] = correct / max(x.shape[0], 1)
    return out
