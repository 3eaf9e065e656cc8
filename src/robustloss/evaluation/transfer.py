"""The transfer matrix: every substitute's adversarial examples against every target (the MMC paper, Fig. 4)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from robustloss.attacks.transfer import build_crafting_attack
from robustloss.classifier import predict
from robustloss.errors import UserError, check_int
from robustloss.evaluation.suite import AttackSpec, parse_spec


def transfer_matrix(substitutes: Mapping[str, nn.Module], targets: Mapping[str, nn.Module], x: Tensor, y: Tensor,
                    attack: AttackSpec | str, *, batch_size: int = 500,
                    final_iterate: bool = True) -> dict[tuple[str, str], float]:
    """Accuracy of every target on the examples crafted on every substitute (the MMC paper, Fig. 4).

    Adversarial examples are crafted once per substitute (with its own adaptive
    loss, in batches of ``batch_size``) and evaluated on every target; the value
    for ``(substitute, target)`` is the target's accuracy on them (all points,
    whether or not the target classified the clean point correctly).  A
    substitute that is also a target gives the white-box number on the diagonal
    (of the full-length attack when ``final_iterate=True``).
    """
    spec = parse_spec(attack) if isinstance(attack, str) else attack
    if x.shape[0] != y.shape[0]:
        raise UserError(f"x and y disagree in length: {x.shape[0]} vs {y.shape[0]}")
    batch_size = check_int("batch_size", batch_size, 1)
    out: dict[tuple[str, str], float] = {}
    for sub_name, substitute in substitutes.items():
        crafting = build_crafting_attack(substitute, spec.attack, spec.params, final_iterate=final_iterate)
        x_adv = torch.cat([crafting(x[i:i + batch_size], y[i:i + batch_size])
                           for i in range(0, x.shape[0], batch_size)]) if x.shape[0] else x.clone()
        for tgt_name, target in targets.items():
            correct = int((predict(target, x_adv, batch_size) == y.cpu()).sum())
            out[(sub_name, tgt_name)] = correct / max(x.shape[0], 1)
    return out
