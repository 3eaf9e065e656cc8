"""Gradient-masking diagnostics: cheap sanity checks that a robustness number is not an artefact.

A model can look robust only because its gradients are useless to the attacker
("obfuscated gradients", Athalye, Carlini & Wagner 2018).  The PC paper
("Identifying Gradient Masking", after Athalye et al. 2018 and Carlini et al.
2019) names three signs that this is *not* happening, checked here together
with two further sanity checks of the kind run by AutoAttack (Croce & Hein
2020) before an evaluation:

``iterative-beats-one-step``
    criterion (1) of the PC paper: an iterative attack is at least as strong
    as a one-step one.  PGD (``steps`` steps, random start) accuracy must not
    exceed FGSM accuracy at the same ``eps`` with the same loss (by more than
    ``tolerance``).
``white-box-beats-black-box``
    criterion (2) of the PC paper: a gradient-free attack must not beat the
    white-box one.  PGD accuracy must not exceed the accuracy under SPSA
    (Uesato et al. 2018; only model evaluations) on the same points (by more
    than ``tolerance``).  The SPSA budget is small (``spsa_n`` points,
    ``spsa_steps`` steps of ``spsa_samples`` evaluations): it detects masking,
    it is no strong attack.
``accuracy-falls-with-eps``
    criterion (3) of the PC paper: a larger budget gives a stronger attack;
    and an unbounded one fools every point (Carlini et al. 2019).  PGD accuracy
    at ``eps``, ``2 eps`` (when below the bound) and ``large_eps`` (default: the
    width of the input bounds, where any input can be reached) must not
    increase (by more than ``tolerance``), and at ``large_eps`` it must be at
    most ``large_eps_max_accuracy``.
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
    its robustness.  A failure says so (the gradient attacks' ``eot`` option,
    :mod:`robustloss.attacks.base`); the other checks' attacks use one draw
    per gradient and are themselves no EoT attacks.

Every attack uses the same ``loss`` - by default the objective's adaptive loss
(the MMC paper, App. B.4), the default of the attacks.  Accuracies are over all
points used (a misclassified clean point counts as not robust), in eval mode.

Defaults are cheap (a few seconds for LeNet-5 on a CPU): the first ``n=200``
points, PGD with ``steps=20`` and step size ``2.5 eps / steps`` (Madry et al.
2018), SPSA on the first ``spsa_n=50`` of them with ``spsa_steps=20``,
``spsa_samples=128`` evaluations per step (the MMC paper, Sec. 4.4),
``delta=0.01`` and learning rate ``spsa_lr = 2 eps / spsa_steps`` (the MMC
paper uses 0.01 with 10 steps at eps <= 16/255; at the MNIST eps=0.3 that
could not leave a 0.1-ball, so the rate is scaled to the budget),
``tolerance=0.03`` (absolute accuracy),
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

from robustloss.attacks import FGSM, PGD, SPSA, Attack, AttackLoss
from robustloss.attacks.base import random_in_ball
from robustloss.attacks.losses import forward, locate_for, resolve_loss
from robustloss.classifier import Located, eval_mode, predict
from robustloss.errors import UserError, check_int, check_range, unknown_choice
from robustloss.evaluation.suite import AttackSpec

#: number of points the checks use by default (the first ones of the evaluation set)
DEFAULT_N = 200
#: attacks whose ``eps`` option is an L-inf radius (unless ``norm="l2"``), for :func:`default_eps`
LINF_EPS_ATTACKS = ("apgd", "bim", "fgsm", "mim", "multitarget", "pgd", "simba", "spsa", "transfer")

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


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def gradient_status(model: nn.Module, loss_fn: AttackLoss, x: Tensor, y: Tensor,
                    located: Located | None = None) -> tuple[Tensor, Tensor]:
    """Per example: (gradient of the loss w.r.t. the input is all zero, has a non-finite entry).

    A loss that does not depend on the input through autograd (e.g. ``x.detach()``
    in the forward) counts as all zero.
    """
    with eval_mode(model), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        loss = loss_fn(forward(model, xg, located), y, None)
        grad = None
        if loss.requires_grad:
            (grad,) = torch.autograd.grad(loss.sum(), xg, allow_unused=True)
        flat = (torch.zeros_like(xg) if grad is None else grad.detach()).flatten(1)
    return (flat == 0).all(dim=1).cpu(), (~torch.isfinite(flat).all(dim=1)).cpu()


class _Diagnosis:
    """The checks on fixed points; attacks batch by batch in eval mode, PGD runs shared between checks."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, *, eps: float, steps: int,
                 loss: str | AttackLoss | None, bounds: tuple[float, float], batch_size: int,
                 device: torch.device, seed: int) -> None:
        self.model, self.x, self.y, self.eps, self.steps, self.loss = model, x, y, eps, steps, loss
        self.bounds, self.batch_size, self.device, self.seed = bounds, batch_size, device, seed
        self.clean = self.predict(x) == y
        self._pgd: dict[float, Tensor] = {}

    def predict(self, x: Tensor) -> Tensor:
        return predict(self.model, x, self.batch_size, self.device)

    def robust(self, attack: Attack, m: int | None = None) -> Tensor:
        """Robust per point of the first ``m``: only clean-correct points are attacked, the others are not robust."""
        ok = self.clean[:m].clone()
        idx = torch.nonzero(ok).squeeze(1)
        for i in range(0, len(idx), self.batch_size):
            j = idx[i:i + self.batch_size]
            ok[j] = attack.run(self.x[j].to(self.device), self.y[j].to(self.device)).prediction.cpu() == self.y[j]
        return ok

    def pgd(self, radius: float) -> Tensor:
        """PGD-``steps`` at ``radius`` (step ``2.5 radius / steps``, random start); cached per radius."""
        if radius not in self._pgd:
            attack = PGD(self.model, radius, self.steps, 2.5 * radius / self.steps, loss=self.loss,
                         bounds=self.bounds, seed=self.seed)
            self._pgd[radius] = self.robust(attack)
        return self._pgd[radius]

    def compare(self, name: str, strong: str, weak: str, rob_strong: Tensor, rob_weak: Tensor,
                tolerance: float, values: dict[str, Any]) -> Check:
        """Pass if the (supposedly) stronger attack leaves at most ``tolerance`` more accuracy."""
        a_strong, a_weak = _acc(rob_strong), _acc(rob_weak)
        values.update({"n": len(rob_strong), "tolerance": tolerance})
        passed = a_strong <= a_weak + tolerance
        rel = "<=" if a_strong <= a_weak else ">"
        verdict = "ok" if passed else f"{strong} is weaker by more than {_pct(tolerance)}: gradient masking?"
        return Check(name, passed, f"{strong} {_pct(a_strong)} {rel} {weak} {_pct(a_weak)} ({verdict})", values)

    # ------------------------------------------------------------------ the checks
    def iterative_beats_one_step(self, tolerance: float) -> Check:
        rob = self.pgd(self.eps)
        fgsm = self.robust(FGSM(self.model, self.eps, loss=self.loss, bounds=self.bounds, seed=self.seed))
        values = {"eps": self.eps, "clean_accuracy": _acc(self.clean), "pgd_steps": self.steps,
                  "pgd_accuracy": _acc(rob), "fgsm_accuracy": _acc(fgsm)}
        return self.compare("iterative-beats-one-step", f"PGD-{self.steps}", "FGSM", rob, fgsm, tolerance, values)

    def white_box_beats_black_box(self, tolerance: float, spsa_n: int, spsa_steps: int, spsa_samples: int,
                                  spsa_lr: float | None) -> Check:
        m = min(spsa_n, len(self.x))
        lr = 2 * self.eps / spsa_steps if spsa_lr is None else spsa_lr
        rob = self.pgd(self.eps)[:m]
        spsa = SPSA(self.model, self.eps, spsa_steps, samples=spsa_samples, lr=lr, loss=self.loss,
                    bounds=self.bounds, seed=self.seed)
        rob_s = self.robust(spsa, m)
        values = {"eps": self.eps, "pgd_steps": self.steps, "pgd_accuracy": _acc(rob), "spsa_accuracy": _acc(rob_s),
                  "spsa_steps": spsa_steps, "spsa_samples": spsa_samples, "spsa_lr": lr}
        return self.compare("white-box-beats-black-box", f"PGD-{self.steps}", f"SPSA-{spsa_steps} (black box)",
                            rob, rob_s, tolerance, values)

    def accuracy_falls_with_eps(self, tolerance: float, large: float, max_accuracy: float) -> Check:
        name = "accuracy-falls-with-eps"
        radii = sorted({self.eps, *([2 * self.eps] if 2 * self.eps < large else []), large})
        accs = [_acc(self.pgd(r)) for r in radii]
        values = {"eps": radii, "pgd_steps": self.steps, "pgd_accuracy": accs,
                  "max_accuracy_at_large_eps": max_accuracy, "tolerance": tolerance, "n": len(self.x)}
        problems = []
        rises = [f"{_pct(a)} at eps={r:g} after {_pct(p)} at eps={q:g}"
                 for q, p, r, a in zip(radii, accs, radii[1:], accs[1:]) if a > p + tolerance]
        if rises:
            problems.append("accuracy rises with eps (" + "; ".join(rises) + ")")
        if accs[-1] > max_accuracy:
            problems.append(f"{_pct(accs[-1])} > {_pct(max_accuracy)} survive at eps={large:g}, "
                            "where an unbounded attack should fool every point")
        verdict = "ok" if not problems else "; ".join(problems) + ": gradient masking?"
        curve = ", ".join(f"eps={r:g}: {_pct(a)}" for r, a in zip(radii, accs))
        return Check(name, not problems, f"PGD-{self.steps} {curve} ({verdict})", values)

    def finite_nonzero_gradients(self, max_fraction: float) -> Check:
        located = locate_for(self.model, self.loss)
        loss_fn = resolve_loss(located, self.loss)
        gen = torch.Generator().manual_seed(self.seed)
        status: dict[str, list[Tensor]] = {"zero_clean": [], "bad_clean": [], "zero_random": [], "bad_random": []}
        for i in range(0, len(self.x), self.batch_size):
            xb, yb = self.x[i:i + self.batch_size], self.y[i:i + self.batch_size].to(self.device)
            xr = (xb + random_in_ball(xb.shape, self.eps, "linf", gen, xb.device, xb.dtype)).clamp(*self.bounds)
            for where, point in (("clean", xb), ("random", xr)):
                zero, bad = gradient_status(self.model, loss_fn, point.to(self.device), yb, located)
                status[f"zero_{where}"].append(zero)
                status[f"bad_{where}"].append(bad)
        frac = {k: float(torch.cat(v).float().mean()) for k, v in status.items()}
        masked = max(float((torch.cat(status["zero_clean"]) | torch.cat(status["bad_clean"])).float().mean()),
                     float((torch.cat(status["zero_random"]) | torch.cat(status["bad_random"])).float().mean()))
        values = {"zero_fraction_clean": frac["zero_clean"], "nonfinite_fraction_clean": frac["bad_clean"],
                  "zero_fraction_random": frac["zero_random"], "nonfinite_fraction_random": frac["bad_random"],
                  "max_fraction": max_fraction, "n": len(self.x)}
        passed = masked <= max_fraction
        verdict = "ok" if passed else f"more than {_pct(max_fraction)} of the points have no usable gradient: " \
                                      "gradient masking?"
        return Check("finite-nonzero-gradients", passed,
                     f"zero gradient at {_pct(frac['zero_clean'])} of the clean points and {_pct(frac['zero_random'])} "
                     f"of random points in the eps={self.eps:g} ball, non-finite at {_pct(frac['bad_clean'])} and "
                     f"{_pct(frac['bad_random'])} ({verdict})", values)

    def deterministic_outputs(self) -> Check:
        def logits() -> Tensor:
            with eval_mode(self.model), torch.no_grad():
                return torch.cat([self.model(self.x[i:i + self.batch_size].to(self.device)).cpu()
                                  for i in range(0, len(self.x), self.batch_size)])

        first, second = logits(), logits()
        fin1, fin2 = torch.isfinite(first), torch.isfinite(second)
        both = fin1 & fin2
        diff = float((first - second).abs()[both].max()) if bool(both.any()) else 0.0
        scale = float(first[fin1].abs().max()) if bool(fin1.any()) else 1.0
        flips = int((first.argmax(1) != second.argmax(1)).sum())
        passed = diff <= 1e-5 * max(scale, 1.0) and bool((fin1 == fin2).all())
        values = {"max_abs_logit_difference": diff, "prediction_changes": flips, "n": len(self.x)}
        verdict = "ok" if passed else ("the model is random in eval mode: attacks need EoT (gradients averaged over "
                                        "its randomness: the gradient attacks' eot option, e.g. pgd:...,eot=10); "
                                        "attacks without it overestimate its robustness")
        detail = f"two forward passes differ by up to {diff:.3g} in the logits, {flips} of {len(self.x)} " \
                 f"predictions change ({verdict})"
        return Check("deterministic-outputs", passed, detail, values)


def _acc(robust: Tensor) -> float:
    return float(robust.float().mean())


def default_eps(suite: list[AttackSpec], eps: float | None = None) -> float:
    """``eps`` if given, else the largest L-inf ``eps`` of the suite's attacks (their default when not set)."""
    if eps is not None:
        return check_range("diagnostics eps", eps, low=0.0, low_inclusive=False)
    from robustloss.attacks import ATTACKS

    radii = []
    for spec in suite:
        if spec.attack not in LINF_EPS_ATTACKS or str(spec.params.get("norm", "linf")) != "linf":
            continue
        value = spec.params.get("eps", ATTACKS.defaults(spec.attack).get("eps"))
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                radii.append(float(value))
            except ValueError:
                continue
    radii = [r for r in radii if r > 0]
    if not radii:
        raise UserError("the suite has no L-inf attack with an eps to run the diagnostics at; "
                        "give one with --diagnose-eps")
    return max(radii)


def diagnose(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, n: int = DEFAULT_N, steps: int = 20,
             loss: str | AttackLoss | None = None, large_eps: float | None = None,
             spsa_n: int = 50, spsa_steps: int = 20, spsa_samples: int = 128, spsa_lr: float | None = None,
             tolerance: float = 0.03, max_masked_fraction: float = 0.05, large_eps_max_accuracy: float = 0.05,
             bounds: tuple[float, float] = (0.0, 1.0), batch_size: int = 200, device: torch.device | str = "cpu",
             seed: int = 0, checks: tuple[str, ...] | list[str] | None = None) -> list[Check]:
    """Run the gradient-masking checks (see the module docstring) on the first ``n`` points of ``(x, y)``.

    L-inf attacks at radius ``eps``; returns one :class:`Check` per name of
    ``checks`` (default: all of :data:`CHECKS`), in that order.  Each check
    that fails deserves a closer look (see docs/attacks.md).
    """
    eps = check_range("diagnostics eps", eps, low=0.0, low_inclusive=False)
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise UserError(f"bounds must satisfy low < high, got {bounds!r}")
    n, steps, spsa_n, spsa_steps, batch_size = (check_int(f"diagnostics {k}", v, 1) for k, v in (
        ("n", n), ("steps", steps), ("spsa_n", spsa_n), ("spsa_steps", spsa_steps), ("batch_size", batch_size)))
    if check_int("diagnostics spsa_samples", spsa_samples, 2) % 2:
        raise UserError(f"diagnostics spsa_samples must be even (antithetic pairs), got {spsa_samples!r}")
    for key, value in (("tolerance", tolerance), ("max_masked_fraction", max_masked_fraction),
                       ("large_eps_max_accuracy", large_eps_max_accuracy)):
        check_range(f"diagnostics {key}", value, low=0.0, high=1.0)
    selected = list(CHECKS if checks is None else checks)
    for key in selected:
        if key not in CHECKS:
            raise unknown_choice("diagnostic check", key, CHECKS)
    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"diagnostics need a non-empty batch with one label per input, got {len(x)} inputs "
                        f"and {len(y)} labels")
    large = (hi - lo) if large_eps is None else check_range("diagnostics large_eps", large_eps, low=eps)
    resolve_loss(locate_for(model, loss), loss)  # an unknown loss or a hidden objective fails here, before any attack
    run = _Diagnosis(model, x[:n].cpu(), y[:n].long().cpu(), eps=eps, steps=steps, loss=loss, bounds=(lo, hi),
                     batch_size=batch_size, device=torch.device(device), seed=seed)
    checks_by_name: dict[str, Callable[[], Check]] = {
        "iterative-beats-one-step": lambda: run.iterative_beats_one_step(tolerance),
        "white-box-beats-black-box": lambda: run.white_box_beats_black_box(tolerance, spsa_n, spsa_steps,
                                                                            spsa_samples, spsa_lr),
        "accuracy-falls-with-eps": lambda: run.accuracy_falls_with_eps(tolerance, large, large_eps_max_accuracy),
        "finite-nonzero-gradients": lambda: run.finite_nonzero_gradients(max_masked_fraction),
        "deterministic-outputs": run.deterministic_outputs,
    }
    out = []
    for key in selected:
        try:
            out.append(checks_by_name[key]())
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - a crash inside a check is a failed check, reported with its cause
            out.append(Check(key, False, f"the check crashed: {type(exc).__name__}: {_first_line(exc)}",
                             {"error": f"{type(exc).__name__}: {_first_line(exc)}"}))
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
    eps = diag.get("eps")
    title = "Diagnostics" if eps is None else f"Diagnostics (eps={eps:g})"
    text = f"\n## {title}\n\n" + markdown_table(["check", "result", "detail"], rows)
    warnings = warning_lines(diag["checks"])
    text += "\n## Warnings\n\n" + ("".join(f"- {w}\n" for w in warnings) if warnings else
                                   "None: every gradient-masking check passed.\n")
    return text
