"""The evaluation engine: runs a suite of attacks on a model, batch by batch, into results.

* Only points the model classifies correctly are attacked (a misclassified
  clean point is already non-robust); robust accuracy is over all points.
* ``worst_case=True`` (AutoAttack-style ensemble): each attack runs only on
  the points that survived every previous attack, and the result reports, per
  example, whether it survived them all - the honest number, since a defence is
  only as good as the strongest attack it survives.
* Each attack's randomness comes from its own seed (``seed + index``), and
  within an attack every example has its own stream, seeded by
  :func:`example_seeds` from the attack's seed and the example's *global* index
  (``Attack.run(..., example_seeds=...)``): random starts, restarts, targets and
  SPSA's samples of an example do not depend on the batch size, on which points
  survived earlier attacks (worst-case mode) or on how the points are split
  over processes - only on float rounding of batched kernels.
* :func:`evaluate_shard` runs a suite on a subset of the points (one rank's
  shard under ``torchrun``) and appends one row per example and attack to a
  :class:`~robustloss.evaluation.rows.RowStore` as each batch finishes;
  :func:`result_from_rows` turns the rows of all shards into the
  :class:`EvalResult` a single process would have produced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustloss.attacks import ATTACKS, Attack, AttackResult
from robustloss.attacks.transfer import MODEL_OPTIONS
from robustloss.classifier import predict
from robustloss.errors import UserError
from robustloss.evaluation.rows import RowStore, Rows, attack_id
from robustloss.evaluation.suite import AttackSpec

_MASK63 = (1 << 63) - 1


def example_seeds(attack_seed: int, indices: Tensor) -> Tensor:
    """The seed of every example (by global index) for an attack seeded ``attack_seed`` (int64, >= 0).

    A SplitMix64-style mix of ``(attack_seed, index)`` in wrapping int64 arithmetic.
    """
    z = indices.long() * 0x5851F42D4C957F2D + (int(attack_seed) * 0x14057B7EF767814F & _MASK63)
    z = z ^ (z >> 31)
    z = z * 0x2545F4914F6CDD1D
    z = z ^ (z >> 29)
    return z & _MASK63


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
               attack: Attack | None = None,
               on_batch: Callable[[Tensor, AttackResult, Tensor, float], None] | None = None) -> SpecResult:
    """Run ``spec`` on the points ``todo`` (indices) of ``(x, y)``; the others count as not robust.

    ``attack`` is ``spec`` already built (with ``seed``); built here when not given.
    Example ``i`` is attacked with the seed ``example_seeds(attack.seed, i)``.
    ``on_batch(indices, result, seeds, seconds)`` is called after every batch.
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
        seeds = example_seeds(attack.seed, idx)
        batch_start = time.perf_counter()
        res = attack.run(xb, yb, example_seeds=seeds)
        if on_batch is not None:
            on_batch(idx, res, seeds, time.perf_counter() - batch_start)
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


def evaluate_shard(model: nn.Module, x: Tensor, y: Tensor, suite: list[AttackSpec], *, indices: Tensor,
                   store: RowStore, batch_size: int = 500, device: torch.device | str = "cpu", seed: int = 0,
                   worst_case: bool = False, progress: bool = False,
                   models: Mapping[str, nn.Module] | None = None) -> Rows:
    """Evaluate the points ``indices`` of ``(x, y)`` under ``suite``, appending rows to ``store``.

    Rows already in ``store`` (:meth:`RowStore.load`, from any process) are not
    computed again, so a killed evaluation resumes at batch granularity.  In
    worst-case mode an attack runs on the points that are clean-correct and
    robust to every earlier attack *according to the rows*.  Returns the rows.
    """
    device = torch.device(device)
    attacks = [build_attack(model, spec, seed + index, models) for index, spec in enumerate(suite)]
    rows = store.load()
    todo = torch.tensor([int(i) for i in indices.tolist() if int(i) not in rows.clean], dtype=torch.long)
    for start in range(0, len(todo), batch_size):
        idx = todo[start:start + batch_size]
        began = time.perf_counter()
        pred = predict(model, x[idx], batch_size, device)
        store.append([{"kind": "clean", "i": int(i), "label": int(label), "pred": int(p)}
                      for i, label, p in zip(idx.tolist(), y[idx].tolist(), pred.tolist())],
                     {"kind": "clean", "queries": len(idx), "time_s": round(time.perf_counter() - began, 4)})
    mine = indices.long()
    alive = torch.tensor([rows.clean[int(i)]["pred"] == rows.clean[int(i)]["label"] for i in mine.tolist()],
                         dtype=torch.bool)
    for index, (spec, attack) in enumerate(zip(suite, attacks)):
        aid = attack_id(spec.key(), attack.seed)
        done = rows.attacks.get(aid, {})
        eligible = mine[alive] if worst_case else mine[_clean_correct(rows, mine)]
        todo = torch.tensor([i for i in eligible.tolist() if i not in done], dtype=torch.long)

        def record(idx: Tensor, res: AttackResult, seeds: Tensor, seconds: float, aid: str = aid) -> None:
            labels, adv = y[idx].tolist(), res.prediction.cpu().tolist()
            spent: list[int | None] = ([None] * len(labels) if res.example_queries is None
                                       else res.example_queries.cpu().tolist())
            store.append([{"kind": "attack", "attack": aid, "i": i, "label": label,
                           "clean_pred": rows.clean[i]["pred"], "adv_pred": a, "success": bool(ok),
                           "distortion": float(d), "queries": q, "seed": int(sd)}
                          for i, label, a, ok, d, q, sd in zip(idx.tolist(), labels, adv,
                                                               res.success.cpu().tolist(),
                                                               res.distortion.cpu().tolist(), spent, seeds.tolist())],
                         {"kind": "attack", "attack": aid, "label": spec.label, "queries": res.queries,
                          "time_s": round(seconds, 4)})

        if len(todo):
            run_attack(model, spec, x, y, todo, batch_size=batch_size, device=device, seed=seed + index,
                       progress=progress, attack=attack, on_batch=record)
        done = store.rows.attacks.get(aid, {})
        survived = torch.tensor([i in done and done[i]["adv_pred"] == done[i]["label"] for i in mine.tolist()],
                                dtype=torch.bool)
        alive &= survived
    return store.rows


def _clean_correct(rows: Rows, indices: Tensor) -> Tensor:
    return torch.tensor([rows.clean[i]["pred"] == rows.clean[i]["label"] for i in indices.tolist()],
                        dtype=torch.bool)


def result_from_rows(rows: Rows, n: int, suite: list[AttackSpec], attacks: list[Attack], *,
                     worst_case: bool = False) -> EvalResult:
    """The :class:`EvalResult` of the points ``0..n-1`` from the rows of every shard.

    An example without an attack row counts as not robust to that attack (it was
    misclassified, or - worst case - fooled by an earlier attack); a missing
    row (a shard that never finished) is an error.  ``attacks`` are the suite's
    attacks as built by the evaluation (for their seeds).
    """
    missing = [i for i in range(n) if i not in rows.clean]
    if missing:
        raise UserError(f"the stored results lack {len(missing)} of {n} points (e.g. #{missing[0]}); "
                        "an evaluation process did not finish - run the evaluation again to complete them")
    clean = torch.tensor([rows.clean[i]["pred"] == rows.clean[i]["label"] for i in range(n)], dtype=torch.bool)
    result = EvalResult(n, clean, worst_case_mode=worst_case)
    alive = clean.clone()
    for spec, attack in zip(suite, attacks):
        aid = attack_id(spec.key(), attack.seed)
        done = rows.attacks.get(aid, {})
        expected = alive if worst_case else clean
        lacking = [i for i in range(n) if bool(expected[i]) and i not in done]
        if lacking:
            raise UserError(f"the stored results of '{spec.label}' lack {len(lacking)} points (e.g. #{lacking[0]}); "
                            "run the evaluation again to complete them")
        robust = torch.zeros(n, dtype=torch.bool)
        distortion = torch.full((n,), float("nan")) if attack.minimum_norm else None
        attacked = 0
        for i in range(n):
            row = done.get(i)
            if row is None or not bool(expected[i]):
                continue
            attacked += 1
            robust[i] = row["adv_pred"] == row["label"]
            if distortion is not None:
                distortion[i] = row["distortion"] if row["success"] else float("inf")
        result.attacks.append(SpecResult(spec, robust, rows.cost.get(aid, (0, 0.0))[1], attacked, distortion))
        alive &= robust
    return result
