"""Carlini & Wagner L2 attack (Carlini & Wagner 2017, "Towards evaluating the robustness of neural networks")."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.adam import Adam
from robustloss.attacks.base import Attack
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import UserError, check_int, check_range

#: named losses that are margins (> 0 iff success), the only ones C&W's ``f`` makes sense with
MARGIN_LOSSES = ("adaptive-margin", "margin", "dlr")
#: an upper bound on ``c`` this large means "no successful ``c`` seen yet" (C&W reference code)
_NO_UPPER = 1e10


class CarliniWagnerL2(Attack):
    r"""C&W-L2: the minimum-L2 adversarial example per input, found by optimisation.

    For every example, with the change of variables ``x' = lo + (hi - lo) (tanh(w) + 1) / 2``
    (so ``x'`` always lies in the bounds), minimise with Adam
    (:class:`~robustloss.attacks.adam.Adam`) over ``w``::

        ||x' - x||_2^2 + c * f(x'),     f(x') = max(-m(x'), -kappa)

    where ``m`` is the attack loss (positive = success): by default the
    objective's form-2 *adaptive margin* ("adaptive-margin"), i.e. the C&W
    margin on the objective's attack logits, ``-L_Ada^{un,2}`` / ``-L_Ada^{tar,2}``
    of the MMC paper, App. B.4 (for MMC ``L_MMC(z,y) - L_MMC(z,y~)`` untargeted).
    ``kappa`` is the confidence.  An iterate counts as a success when the model
    predicts a wrong class (untargeted) / the target (targeted) **and**
    ``m(x') >= kappa``.

    ``m`` must be a margin, positive exactly when the attack succeeds: the named
    losses "adaptive-margin", "margin" (C&W margin on the plain logits) or
    "dlr", or a callable with that sign convention.  The form-1 losses
    ("adaptive", "ce") are refused: with them ``f = max(-CE, 0) = 0`` is constant.

    The constant ``c`` is chosen per example by binary search: start at
    ``initial_const``; after each of the ``search_steps`` runs of ``steps`` Adam
    iterations (each run restarts from ``w = atanh(x)`` with a fresh Adam state),
    a success lowers the upper bound (``c <- (lo_c + up_c) / 2``), a failure
    raises the lower bound (``c <- (lo_c + up_c) / 2``, or ``10 c`` while no
    success has been seen).  Abort-early: every ``steps // 10`` iterations an
    example whose loss did not decrease (by a relative 1e-4) since the previous
    check stops its run; a run ends when all its examples stopped.  This is
    the reference algorithm applied per example (each example has its own
    ``c``, Adam state and abort-early), computed batched over the examples
    still running.

    Result: for every example the successful iterate of minimal L2 distortion
    over all iterations and search steps; the original ``x`` where no iterate
    succeeded.  An input the model already gets wrong (with margin >= kappa)
    is returned unchanged with distortion 0.  In the :class:`AttackResult`,
    ``distortion`` is ``||x_adv - x||_2`` of the returned point and ``success``
    says whether it fools the model, so the mean distortion of the successes is
    ``r.distortion[r.success].mean()`` (the MMC paper's Table 2 Part I reports such
    averages) and "the attack succeeds within eps" is ``r.success & (r.distortion <= eps)``.

    Defaults (the MMC paper, Sec. 4.3, following Carlini & Wagner 2017a): 9
    binary search steps, initial constant 0.01, 1,000 iterations per constant,
    learning rate 0.005; confidence 0 (the PC paper, "Performance on white-box
    attacks"); abort-early on as in the C&W reference code.  Targeted and untargeted.
    """

    name = "cw"
    default_loss = "adaptive-margin"
    minimum_norm = True
    norm = "l2"

    def __init__(self, model: nn.Module, *, steps: int = 1000, search_steps: int = 9,
                 initial_const: float = 0.01, lr: float = 0.005, confidence: float = 0.0,
                 abort_early: bool = True, loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        if isinstance(loss, str) and loss not in MARGIN_LOSSES:
            raise UserError(f"C&W needs a margin loss (positive exactly when the attack succeeds), got "
                            f"loss '{loss}'; valid choices: {', '.join(MARGIN_LOSSES)}")
        super().__init__(model, loss=loss, targeted=targeted, bounds=bounds, seed=seed)
        self.steps = check_int("steps", steps, 1)
        self.search_steps = check_int("search_steps", search_steps, 1)
        self.initial_const = check_range("initial_const", initial_const, low=0.0, low_inclusive=False)
        self.lr = check_range("lr", lr, low=0.0, low_inclusive=False)
        self.confidence = check_range("confidence", confidence, low=0.0)
        self.abort_early = bool(abort_early)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "steps": self.steps, "search_steps": self.search_steps,
                "initial_const": self.initial_const, "lr": self.lr, "confidence": self.confidence,
                "abort_early": self.abort_early}

    # ------------------------------------------------------------------ tanh space
    def to_input(self, w: Tensor) -> Tensor:
        lo, hi = self.bounds
        return self.clamp(lo + (hi - lo) * (torch.tanh(w) + 1) / 2)

    def to_tanh(self, x: Tensor) -> Tensor:
        lo, hi = self.bounds
        unit = ((x - lo) / (hi - lo) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
        return torch.atanh(unit)

    def margin_success(self, logits: Tensor, margin: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        return self.is_adversarial(logits, labels, targets) & (margin >= self.confidence)

    # ------------------------------------------------------------------ attack
    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        n = x.shape[0]
        best = x.clone()
        best_sq = torch.full((n,), math.inf, device=x.device, dtype=torch.float64)
        if n:
            out = self.forward(x)
            margin = self.loss_fn(out, labels, targets)
            already = self.margin_success(out.logits, margin, labels, targets)
            best_sq[already] = 0.0
            todo = (~already).nonzero().squeeze(1)
        else:
            todo = torch.arange(0, device=x.device)
        const = torch.full((n,), self.initial_const, device=x.device, dtype=torch.float64)
        lower = torch.zeros(n, device=x.device, dtype=torch.float64)
        upper = torch.full((n,), _NO_UPPER, device=x.device, dtype=torch.float64)
        for _ in range(self.search_steps):
            if todo.numel() == 0:
                break
            t = None if targets is None else targets[todo]
            ok = self.optimize(x[todo], labels[todo], t, const[todo], best_sq, best, todo)
            c = const[todo]
            up = torch.where(ok, torch.minimum(upper[todo], c), upper[todo])
            low = torch.where(ok, lower[todo], torch.maximum(lower[todo], c))
            upper[todo], lower[todo] = up, low
            const[todo] = torch.where(up < _NO_UPPER / 10, (low + up) / 2, c * 10)
        hit = best_sq.isfinite()
        if n and bool(hit.any()):
            # successes were decided on sub-batches; confirm them on the returned batch itself
            out = self.forward(best)
            hit &= self.margin_success(out.logits, self.loss_fn(out, labels, targets), labels, targets)
            best[~hit] = x[~hit]
        return best

    def optimize(self, x: Tensor, labels: Tensor, targets: Tensor | None, const: Tensor,
                 best_sq: Tensor, best: Tensor, where: Tensor) -> Tensor:
        """One Adam run per example at constants ``const``; updates ``best``/``best_sq`` in place.

        ``where`` maps the rows of ``x`` to rows of ``best``.  Returns whether any
        iterate succeeded, per row of ``x``.
        """
        w = self.to_tanh(x)
        adam = Adam(w, self.lr)
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        prev = torch.full((x.shape[0],), math.inf, device=x.device, dtype=torch.float64)
        active = torch.arange(x.shape[0], device=x.device)
        check_every = max(self.steps // 10, 1)
        c = const.to(x.dtype)
        for it in range(self.steps):
            if active.numel() == 0:
                break
            t = None if targets is None else targets[active]
            with torch.enable_grad():
                wa = w[active].detach().requires_grad_(True)
                xa = self.to_input(wa)
                out = self.forward(xa, where[active])
                margin = self.loss_fn(out, labels[active], t)
                sq = (xa - x[active]).flatten(1).pow(2).sum(dim=1)
                loss = sq + c[active] * torch.clamp(-margin, min=-self.confidence)
                (grad,) = torch.autograd.grad(loss.sum(), wa)
            loss, sq, margin, xa = loss.detach(), sq.detach(), margin.detach(), xa.detach()
            # keep the smallest successful iterate seen so far
            ok = self.margin_success(out.logits.detach(), margin, labels[active], t)
            found[active] |= ok
            rows = where[active]
            better = ok & (sq.to(torch.float64) < best_sq[rows])
            best_sq[rows[better]] = sq[better].to(torch.float64)
            best[rows[better]] = xa[better]
            w[active] = w[active] - adam.step(active, grad.detach())     # Adam descent step, per example
            if self.abort_early and it % check_every == 0:
                l64 = loss.to(torch.float64)
                p = prev[active]
                stalled = l64 > p - 1e-4 * p.abs()   # inf - inf = nan: never stalled at the first check
                prev[active] = l64
                active = active[~stalled]
        return found
