"""The evaluation engine: runs a suite of attacks on a model, batch by batch, into results.

* Only points the model classifies correctly are attacked (a misclassified
  clean point is already non-robust); robust accuracy is over all points.
* ``worst_case=True`` (AutoAttack-style ensemble): each attack runs only on
  the points that survived every previous attack, and the result reports, per
  example, whether it survived them all - the honest number, since a defence is
  only as good as the strongest attack it survives.
* Each attack's randomness comes from its own seed (``seed + index``).  In
  independent mode an attack's result therefore does not depend on the other
  attacks; in worst-case mode it can, slightly: random starts are drawn per batch,
  and which points share a batch depends on the survivors of earlier attacks
  (measured on MNIST: 11 of 1,000 points at eps 0.1, none at eps 0.3; BENCHMARKS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustloss.attacks import ATTACKS, Attack
from robustloss.attacks.transfer import MODEL_OPTIONS
from robustloss.classifier import predict
from robustloss.errors import UserError
from robustloss.evaluation.suite import AttackSpec


@dataclass
class SpecResult:
    """Outcome of one attack spec on the evaluated points."""

    spec: AttackSpec
    robust: Tensor                     # (N,) bool: still correctly classified after the attack
    time_s: float
    attacked: int                      # how many points the attack was run on
    distortion: Tensor | None = None   # (N,) minimum-norm attacks: distortion of each success, inf otherwise

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.robust.numel() else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.spec.label, "attack": self.spec.attack, "params": self.spec.params,
                               "robust_accuracy": self.accuracy, "attacked": self.attacked,
                               "time_s": round(self.time_s, 3)}
        if self.distortion is not None:
            finite = self.distortion[torch.isfinite(self.distortion)]
            out["mean_distortion"] = float(finite.mean()) if finite.numel() else float("nan")
        return out


@dataclass
class EvalResult:
    """Clean accuracy, one :class:`SpecResult` per spec, and the worst case over all of them."""

    n: int
    clean: Tensor                      # (N,) bool
    attacks: list[SpecResult] = field(default_factory=list)
    worst_case_mode: bool = False

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean.float().mean())

    @property
    def worst_case(self) -> Tensor:
        """(N,) bool: correct on the clean input and robust to every attack."""
        robust = self.clean.clone()
        for res in self.attacks:
            robust &= res.robust
        return robust

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "clean_accuracy": self.clean_accuracy,
                               "worst_case_accuracy": float(self.worst_case.float().mean()),
                               "worst_case_mode": self.worst_case_mode,
                               "attacks": [r.to_dict() for r in self.attacks]}
        if self.worst_case_mode:  # the ensemble's per-example verdict: 1 = survived every attack
            out["worst_case_robust"] = [int(v) for v in self.worst_case.tolist()]
        return out


def build_attack(model: nn.Module, spec: AttackSpec, seed: int,
                 models: Mapping[str, nn.Module] | None = None) -> Attack:
    """``spec`` built on ``model`` with ``seed`` unless the spec sets one.

    A model-valued option given by name (``substitute_model="runs/cnn3"`` of a
    transfer attack) is looked up in ``models``.
    """
    params = dict(spec.params)
    params.setdefault("seed", seed)
    for key in MODEL_OPTIONS:
        ref = params.get(key)
        if isinstance(ref, str):
            if models is None or ref not in models:
                raise UserError(f"attack '{spec.label}': no model named '{ref}' for {key}; "
                                f"known: {', '.join(sorted(models or {})) or '(none)'}")
            params[key] = models[ref]
    return ATTACKS.build(spec.attack, params, model=model)


def run_attack(model: nn.Module, spec: AttackSpec, x: Tensor, y: Tensor, todo: Tensor, *,
               batch_size: int, device: torch.device, seed: int, progress: bool = False,
               attack: Attack | None = None) -> SpecResult:
    """Run ``spec`` on the points ``todo`` (indices) of ``(x, y)``; the others count as not robust.

    ``attack`` is ``spec`` already built (with ``seed``); built here when not given.
    """
    if attack is None:
        attack = build_attack(model, spec, seed)
    robust = torch.zeros(len(x), dtype=torch.bool)
    distortion = torch.full((len(x),), float("nan")) if attack.minimum_norm else None
    start = time.perf_counter()
    # disable=None: tqdm shows the bar only on a terminal (no log spam in CI or files)
    bar = tqdm(total=len(todo), desc=spec.label, unit="img", leave=False, disable=None if progress else True)
    for i in range(0, len(todo), batch_size):
        idx = todo[i:i + batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        res = attack.run(xb, yb)
        robust[idx] = res.prediction.cpu() == yb.cpu()
        if distortion is not None:
            distortion[idx] = torch.where(res.success, res.distortion, float("inf")).float().cpu()
        bar.update(len(idx))
    bar.close()
    return SpecResult(spec, robust, time.perf_counter() - start, len(todo), distortion)


def evaluate(model: nn.Module, x: Tensor, y: Tensor, suite: list[AttackSpec], *, batch_size: int = 500,
             device: torch.device | str = "cpu", seed: int = 0, worst_case: bool = False,
             progress: bool = False, cached: dict[str, SpecResult] | None = None,
             on_result: Callable[[SpecResult], None] | None = None,
             models: Mapping[str, nn.Module] | None = None) -> EvalResult:
    """Evaluate ``model`` on ``(x, y)`` under every attack of ``suite``.

    ``cached`` maps :meth:`AttackSpec.key` to results of an earlier, interrupted
    evaluation (those specs are not run again); ``on_result`` is called after
    each attack (e.g. to save partial results); ``models`` are the models attack
    specs may name (see :func:`build_attack`).
    """
    device = torch.device(device)
    # build every attack first: a bad spec fails before time is spent on the others
    attacks = [build_attack(model, spec, seed + index, models) for index, spec in enumerate(suite)]
    clean = predict(model, x, batch_size, device) == y
    result = EvalResult(len(x), clean, worst_case_mode=worst_case)
    alive = clean.clone()
    for index, spec in enumerate(suite):
        if cached and spec.key() in cached:
            res = cached[spec.key()]
        else:
            todo = torch.nonzero(alive if worst_case else clean).squeeze(1)
            res = run_attack(model, spec, x, y, todo, batch_size=batch_size, device=device,
                             seed=seed + index, progress=progress, attack=attacks[index])
            if on_result is not None:
                on_result(res)
        result.attacks.append(res)
        alive &= res.robust
    return result
