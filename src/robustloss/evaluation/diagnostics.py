"""Gradient-masking diagnostics: cheap sanity checks that a robustness number is not an artefact.

A model can look robust only because its gradients are useless to the attacker
("obfuscated gradients", Athalye, Carlini & Wagner 2018).  Seed 004
("Identifying Gradient Masking", after Athalye et al. 2018 and Carlini et al.
2019) names three signs that this is *not* happening, checked here together
with two further sanity checks of the kind run by AutoAttack (Croce & Hein
2020) before an evaluation:

``iterative-beats-one-step``
    seed 004 (1): an iterative attack is at least as strong as a one-step one.
    PGD (``steps`` steps, random start) accuracy must not exceed FGSM accuracy
    at the same ``eps`` with the same loss (by more than ``tolerance``).
``white-box-beats-black-box``
    seed 004 (2): a gradient-free attack must not beat the white-box one.  PGD
    accuracy must not exceed the accuracy under SPSA (Uesato et al. 2018; only
    model evaluations) on the same points (by more than ``tolerance``).  The
    SPSA budget is small (``spsa_n`` points, ``spsa_steps`` steps of
    ``spsa_samples`` evaluations): it detects masking, it is no strong attack.
``accuracy-falls-with-eps``
    seed 004 (3): a larger budget gives a stronger attack, and an unbounded one
    fools every point.  PGD accuracy at ``eps``, ``2 eps`` (when below the
    bound) and ``large_eps`` (default: the width of the input bounds, where any
    input can be reached) must not increase (by more than ``tolerance``), and
    at ``large_eps`` it must be at most ``large_eps_max_accuracy``.
``finite-nonzero-gradients``
    the fraction of points whose input gradient of the attack loss is all zero
    or not finite, at the clean points and at a random point of the
    ``eps``-ball around each (where PGD starts), must be at most
    ``max_masked_fraction``.  A detached input, a rounding/quantisation layer or
    a saturated softmax gives zero gradients.
``deterministic-outputs``
    two forward passes in eval mode on the same inputs give the same logits
    (up to ``1e-5`` relative).  A randomised model needs attacks that average
    over its randomness (EOT, Athalye et al. 2018); plain attacks overestimate
    its robustness.

Every attack uses the same ``loss`` - by default the objective's adaptive loss
(seed 000 App. B.4), the default of the attacks.  Accuracies are over all
points used (a misclassified clean point counts as not robust), in eval mode.

Defaults are cheap (a few seconds for LeNet-5 on a CPU): the first ``n=200``
points, PGD with ``steps=20`` and step size ``2.5 eps / steps`` (Madry et al.
2018), SPSA on the first ``spsa_n=50`` of them with ``spsa_steps=20``,
``spsa_samples=128`` evaluations per step (seed 000 Sec. 4.4), ``delta=0.01``
and learning rate ``spsa_lr = 2 eps / spsa_steps`` (seed 000 uses 0.01 with 10
steps at eps <= 16/255; at the MNIST eps=0.3 that could not leave a 0.1-ball,
so the rate is scaled to the budget), ``tolerance=0.03`` (absolute accuracy),
``max_masked_fraction=0.05`` and ``large_eps_max_accuracy=0.05``.

A failed check means "look closer", not "the model is broken": a check can
fail by chance on few points, and passing all of them proves nothing either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks import FGSM, PGD, SPSA, Attack, AttackLoss, eval_mode
from robustloss.attacks.base import random_in_ball
from robustloss.attacks.losses import forward, resolve_loss
from robustloss.errors import UserError, check_range, unknown_choice

#: the names of the checks, in the order they run
CHECKS = ("iterative-beats-one-step", "white-box-beats-black-box", "accuracy-falls-with-eps",
          "finite-nonzero-gradients", "deterministic-outputs")


@dataclass
class Check:
    """The outcome of one diagnostic: its name, whether it passed and what was measured."""

    name: str
    passed: bool
    detail: str
    #: the measured numbers (accuracies, fractions) by name, for programs
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "values": dict(self.values)}


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{100 * v:.1f}%"


class _Runner:
    """Attacks on the chosen points, batch by batch, in eval mode; accuracies over all points."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device: torch.device) -> None:
        self.model, self.x, self.y = model, x, y
        self.batch_size, self.device = batch_size, device

    def predict(self, x: Tensor) -> Tensor:
        with eval_mode(self.model), torch.no_grad():
            return torch.cat([self.model(x[i:i + self.batch_size].to(self.device)).argmax(1).cpu()
                              for i in range(0, len(x), self.batch_size)])

    def robust(self, attack: Attack, n: int | None = None) -> Tensor:
        """(n,) bool: correct after ``attack`` (only clean-correct points are attacked)."""
        x, y = self.x[:n], self.y[:n]
        ok = self.predict(x) == y
        idx = torch.nonzero(ok).squeeze(1)
        for i in range(0, len(idx), self.batch_size):
            j = idx[i:i + self.batch_size]
            x_adv = attack(x[j].to(self.device), y[j].to(self.device))
            ok[j] = self.predict(x_adv) == y[j]
        return ok


def _accuracy(fn: Callable[[], Tensor]) -> tuple[float, str]:
    """Run an attack; (accuracy, "") or (NaN, why it could not run)."""
    try:
        return float(fn().float().mean()), ""
    except RuntimeError as exc:  # e.g. the loss does not reach the input through autograd
        return float("nan"), str(exc).splitlines()[0]


def _compare(name: str, strong: str, a_strong: float, weak: str, a_weak: float, tolerance: float,
             why: str, values: dict[str, Any]) -> Check:
    if why:
        return Check(name, False, f"{strong} could not run: {why}", values)
    passed = a_strong <= a_weak + tolerance
    rel = "<=" if a_strong <= a_weak else ">"
    verdict = "ok" if passed else f"the stronger attack is weaker by more than {_pct(tolerance)}: gradient masking?"
    return Check(name, passed, f"{strong} {_pct(a_strong)} {rel} {weak} {_pct(a_weak)} ({verdict})", values)


def gradient_status(model: nn.Module, loss_fn: AttackLoss, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per example: (gradient of the loss w.r.t. the input is all zero, has a non-finite entry).

    A loss that does not depend on the input through autograd (e.g. ``x.detach()``
    in the forward) counts as all zero.
    """
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        loss = loss_fn(forward(model, xg), y, None)
        if not loss.requires_grad:
            grad = torch.zeros_like(xg)
        else:
            (g,) = torch.autograd.grad(loss.sum(), xg, allow_unused=True)
            grad = torch.zeros_like(xg) if g is None else g.detach()
    flat = grad.flatten(1)
    nonfinite = ~torch.isfinite(flat).all(dim=1)
    zero = (flat == 0).all(dim=1)
    return zero.cpu(), nonfinite.cpu()


def diagnose(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, n: int = 200, steps: int = 20,
             loss: str | AttackLoss | None = None, large_eps: float | None = None,
             spsa_n: int = 50, spsa_steps: int = 20, spsa_samples: int = 128, spsa_lr: float | None = None,
             tolerance: float = 0.03, max_masked_fraction: float = 0.05, large_eps_max_accuracy: float = 0.05,
             bounds: tuple[float, float] = (0.0, 1.0), batch_size: int = 200, device: torch.device | str = "cpu",
             seed: int = 0, checks: tuple[str, ...] | list[str] | None = None) -> list[Check]:
    """Run the gradient-masking checks (see the module docstring) on the first ``n`` points of ``(x, y)``.

    L-inf attacks at radius ``eps``; returns one :class:`Check` per name of
    ``checks`` (default: all of :data:`CHECKS`), in that order.
    """
    eps = check_range("diagnostics eps", float(eps), low=0.0, low_inclusive=False)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise UserError(f"bounds must satisfy low < high, got {bounds!r}")
    for name, value in (("n", n), ("steps", steps), ("spsa_n", spsa_n), ("spsa_steps", spsa_steps),
                        ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise UserError(f"diagnostics {name} must be an integer >= 1, got {value!r}")
    if isinstance(spsa_samples, bool) or int(spsa_samples) != spsa_samples or spsa_samples < 2 or spsa_samples % 2:
        raise UserError(f"diagnostics spsa_samples must be an even integer >= 2, got {spsa_samples!r}")
    for name, value in (("tolerance", tolerance), ("max_masked_fraction", max_masked_fraction),
                        ("large_eps_max_accuracy", large_eps_max_accuracy)):
        check_range(f"diagnostics {name}", float(value), low=0.0, high=1.0)
    selected = list(CHECKS if checks is None else checks)
    for name in selected:
        if name not in CHECKS:
            raise unknown_choice("diagnostic check", name, CHECKS)
    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"diagnostics need a non-empty batch with one label per input, got {len(x)} inputs "
                        f"and {len(y)} labels")
    large = (hi - lo) if large_eps is None else check_range("diagnostics large_eps", float(large_eps), low=eps)
    resolve_loss(model, loss)  # an unknown loss name fails here, before any attack ran
    device = torch.device(device)
    x, y = x[:n].cpu(), y[:n].long().cpu()
    run = _Runner(model, x, y, batch_size, device)
    bounds = (lo, hi)

    def pgd(radius: float) -> PGD:
        return PGD(model, radius, steps, 2.5 * radius / steps, loss=loss, bounds=bounds, seed=seed)

    pgd_cache: dict[float, tuple[Tensor | None, str]] = {}

    def pgd_robust(radius: float) -> tuple[Tensor | None, str]:
        if radius not in pgd_cache:
            try:
                pgd_cache[radius] = (run.robust(pgd(radius)), "")
            except RuntimeError as exc:
                pgd_cache[radius] = (None, str(exc).splitlines()[0])
        return pgd_cache[radius]

    def acc(robust: Tensor | None, m: int | None = None) -> float:
        return float("nan") if robust is None else float(robust[:m].float().mean())

    clean = run.predict(x) == y
    out: list[Check] = []
    for name in selected:
        if name == "iterative-beats-one-step":
            rob, why = pgd_robust(eps)
            a_fgsm, why_f = _accuracy(lambda: run.robust(FGSM(model, eps, loss=loss, bounds=bounds, seed=seed)))
            values = {"eps": eps, "clean_accuracy": acc(clean), f"pgd{steps}_accuracy": acc(rob),
                      "fgsm_accuracy": a_fgsm, "n": len(x)}
            out.append(_compare(name, f"PGD-{steps}", acc(rob), "FGSM", a_fgsm, tolerance, why or why_f, values))
        elif name == "white-box-beats-black-box":
            m = min(spsa_n, len(x))
            lr = 2 * eps / spsa_steps if spsa_lr is None else spsa_lr
            rob, why = pgd_robust(eps)
            spsa = SPSA(model, eps, spsa_steps, samples=spsa_samples, lr=lr, loss=loss, bounds=bounds, seed=seed)
            a_spsa, why_s = _accuracy(lambda: run.robust(spsa, m))
            values = {"eps": eps, f"pgd{steps}_accuracy": acc(rob, m), "spsa_accuracy": a_spsa, "n": m,
                      "spsa_steps": spsa_steps, "spsa_samples": spsa_samples, "spsa_lr": lr}
            out.append(_compare(name, f"PGD-{steps}", acc(rob, m), f"SPSA-{spsa_steps} (black box)", a_spsa,
                                tolerance, why or why_s, values))
        elif name == "accuracy-falls-with-eps":
            radii = sorted({eps, *([2 * eps] if 2 * eps < large else []), large})
            accs, whys = [], []
            for r in radii:
                rob, why = pgd_robust(r)
                accs.append(acc(rob))
                whys.append(why)
            values = {"eps": radii, f"pgd{steps}_accuracy": accs, "max_accuracy_at_large_eps": large_eps_max_accuracy,
                      "n": len(x)}
            curve = ", ".join(f"eps={r:g}: {_pct(a)}" for r, a in zip(radii, accs))
            why = next((w for w in whys if w), "")
            if why:
                out.append(Check(name, False, f"PGD-{steps} could not run: {why}", values))
                continue
            rises = [f"{_pct(a)} at eps={r:g} after {_pct(p)} at eps={q:g}"
                     for q, p, r, a in zip(radii, accs, radii[1:], accs[1:]) if a > p + tolerance]
            problems = []
            if rises:
                problems.append("accuracy rises with eps (" + "; ".join(rises) + ")")
            if accs[-1] > large_eps_max_accuracy:
                problems.append(f"{_pct(accs[-1])} > {_pct(large_eps_max_accuracy)} survive at eps={large:g}, "
                                "where an unbounded attack should fool every point")
            verdict = "ok" if not problems else "; ".join(problems) + ": gradient masking?"
            out.append(Check(name, not problems, f"PGD-{steps} {curve} ({verdict})", values))
        elif name == "finite-nonzero-gradients":
            loss_fn = resolve_loss(model, loss)
            gen = torch.Generator().manual_seed(seed)
            zero_c, bad_c, zero_r, bad_r = [], [], [], []
            for i in range(0, len(x), batch_size):
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                z, b = gradient_status(model, loss_fn, xb.to(device), yb.to(device))
                zero_c.append(z)
                bad_c.append(b)
                xr = (xb + random_in_ball(xb.shape, eps, "linf", gen, xb.device, xb.dtype)).clamp(lo, hi)
                z, b = gradient_status(model, loss_fn, xr.to(device), yb.to(device))
                zero_r.append(z)
                bad_r.append(b)
            zc, bc, zr, br = (float(torch.cat(t).float().mean()) for t in (zero_c, bad_c, zero_r, bad_r))
            worst = max(zc + bc, zr + br)
            values = {"zero_fraction_clean": zc, "nonfinite_fraction_clean": bc, "zero_fraction_random": zr,
                      "nonfinite_fraction_random": br, "max_fraction": max_masked_fraction, "n": len(x)}
            passed = worst <= max_masked_fraction
            verdict = "ok" if passed else f"more than {_pct(max_masked_fraction)} of the points have no usable " \
                                          "gradient: gradient masking?"
            out.append(Check(name, passed, f"zero gradient on {_pct(zc)} of clean points and {_pct(zr)} of random "
                                           f"points in the eps={eps:g} ball; non-finite on {_pct(bc)} / {_pct(br)} "
                                           f"({verdict})", values))
        else:  # deterministic-outputs
            with eval_mode(model), torch.no_grad():
                first = torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
                second = torch.cat([model(x[i:i + batch_size].to(device)).cpu()
                                    for i in range(0, len(x), batch_size)])
            both = torch.isfinite(first) & torch.isfinite(second)
            diff = float((first - second).abs()[both].max()) if bool(both.any()) else 0.0
            nan_mismatch = bool((torch.isfinite(first) != torch.isfinite(second)).any())
            scale = float(first[torch.isfinite(first)].abs().max()) if bool(torch.isfinite(first).any()) else 1.0
            flips = int((first.argmax(1) != second.argmax(1)).sum())
            passed = diff <= 1e-5 * max(scale, 1.0) and not nan_mismatch
            values = {"max_abs_logit_difference": diff, "prediction_changes": flips, "n": len(x)}
            verdict = "ok" if passed else "the model is random in eval mode: attack it with EOT (averaged gradients)"
            out.append(Check(name, passed, f"two forward passes differ by up to {diff:.3g} in the logits, "
                                           f"{flips} of {len(x)} predictions change ({verdict})", values))
    return out


def summary(checks: list[Check], **settings: Any) -> dict[str, Any]:
    """The JSON form of a diagnostics run: settings, ``passed`` (all checks) and the checks."""
    return {**settings, "passed": all(c.passed for c in checks), "checks": [c.to_dict() for c in checks]}


def warning_lines(checks: list[Check] | list[dict[str, Any]]) -> list[str]:
    """One ``WARNING`` line per failed check."""
    items = [c.to_dict() if isinstance(c, Check) else c for c in checks]
    return [f"WARNING: diagnostic '{c['name']}' failed: {c['detail']}" for c in items if not c["passed"]]


def markdown(diag: dict[str, Any]) -> str:
    """A Markdown "Diagnostics" table and "Warnings" section for a :func:`summary` dict."""
    from robustloss.evaluation.report import markdown_table

    rows = [[c["name"], "pass" if c["passed"] else "**FAIL**", c["detail"].replace("|", "/")] for c in diag["checks"]]
    text = f"\n## Diagnostics (eps={diag.get('eps', float('nan')):g})\n\n" + markdown_table(["check", "result", "detail"],
                                                                                           rows)
    warnings = warning_lines(diag["checks"])
    text += "\n## Warnings\n\n" + ("".join(f"- {w}\n" for w in warnings) if warnings else
                                   "None: every gradient-masking check passed.\n")
    return text
