"""The attack base classes: one call shape for every attack.

Build an attack with the model and its parameters, call it with
``(x, y[, targets])`` and get ``x_adv``::

    attack = PGD(classifier, eps=0.3, steps=40, step_size=0.01)
    x_adv = attack(x, y)

:class:`Attack` (template method) validates the inputs, draws random targets
for targeted attacks without given ones (seeded, never the true label), puts the
model in eval mode and restores it afterwards, and calls :meth:`Attack.perturb`.
Attacks differentiate only with respect to the input, so model parameters and
their ``.grad`` are never touched; inputs are never modified in place.

:class:`IterativeAttack` is the shared core of the gradient attacks (PGD, BIM,
FGSM, MIM, ...): random start, ``steps`` gradient steps with a norm-specific
update and projection, restarts, and keeping for every example the first iterate
that fools the model (so a point is robust only if it survives every iterate of
every restart); a fooled example leaves the batch, so later steps cost nothing
for it.  Restarts run only on the points still robust.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustloss.attacks.losses import AttackLoss, ModelOutput, check_logits, forward, resolve_loss
from robustloss.errors import UserError, check_range, unknown_choice

NORMS = ("linf", "l2")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode; restore each one's mode on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def random_targets(labels: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """A uniformly random class != label for every example (seeded by ``generator``)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels.cpu() + shift).remainder(num_classes).to(labels.device)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise unknown_choice("norm", norm, NORMS)
    return norm


def lp_norm(v: Tensor, norm: str) -> Tensor:
    """Per-example norm of a batch, shape (N,)."""
    flat = v.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project(delta: Tensor, eps: float, norm: str) -> Tensor:
    """Project perturbations onto the ``norm`` ball of radius ``eps``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = lp_norm(delta, "l2")
    factor = (eps / norms.clamp_min(1e-12)).clamp(max=1.0)
    return delta * _bcast(factor, delta)


def normalize_grad(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction for a unit step in ``norm``: sign (L-inf) or g/||g||_2 (L2)."""
    if norm == "linf":
        return grad.sign()
    return grad / _bcast(lp_norm(grad, "l2").clamp_min(1e-12), grad)


def random_in_ball(shape: torch.Size, eps: float, norm: str, generator: torch.Generator,
                   device: torch.device, dtype: torch.dtype) -> Tensor:
    """Uniform sample in the L-inf ball, or a uniformly random point in the L2 ball."""
    if norm == "linf":
        return ((torch.rand(shape, generator=generator) * 2 - 1) * eps).to(device=device, dtype=dtype)
    direction = torch.randn(shape, generator=generator)
    direction = direction / _bcast(direction.flatten(1).norm(dim=1).clamp_min(1e-12), direction)
    dim = direction[0].numel()
    radius = torch.rand(shape[0], generator=generator).pow(1.0 / dim) * eps
    return (direction * _bcast(radius, direction)).to(device=device, dtype=dtype)


class Attack:
    """Base of every attack: ``attack(x, y, targets=None) -> x_adv``.

    Parameters common to all attacks: ``loss`` (a named loss or callable, see
    :mod:`robustloss.attacks.losses`; default: the objective's adaptive loss),
    ``targeted``, ``bounds`` of valid inputs (default ``(0, 1)``) and ``seed``
    for all of the attack's randomness.
    """

    #: registry name, e.g. ``"pgd"``
    name: ClassVar[str] = ""
    #: loss used when ``loss=None``
    default_loss: ClassVar[str] = "adaptive"
    #: ``True`` for attacks that report a per-example distortion (C&W, DeepFool)
    minimum_norm: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        self.model = model
        self.loss_name = loss if isinstance(loss, str) else (self.default_loss if loss is None else "custom")
        self.loss_fn: AttackLoss = resolve_loss(model, loss, self.default_loss)
        self.targeted = bool(targeted)
        lo, hi = float(bounds[0]), float(bounds[1])
        if not lo < hi:
            raise UserError(f"bounds must satisfy low < high, got {bounds!r}")
        self.bounds = (lo, hi)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        #: per-example distortion of the last call (minimum-norm attacks only)
        self.distortion: Tensor | None = None
        #: per-example success of the last call, where the attack tracks it
        self.success: Tensor | None = None

    # ------------------------------------------------------------------ helpers
    def forward(self, x: Tensor) -> ModelOutput:
        return forward(self.model, x)

    def loss_and_grad(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One forward and one backward: (per-example loss, logits, d loss / d x)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            out = self.forward(x)
            loss = self.loss_fn(out, labels, targets)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), out.logits.detach(), grad.detach()

    def is_adversarial(self, logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        """Success per example: misclassified (untargeted) or the target predicted (targeted)."""
        pred = logits.argmax(dim=1)
        return pred == targets if targets is not None else pred != labels

    def clamp(self, x: Tensor) -> Tensor:
        return x.clamp(self.bounds[0], self.bounds[1])

    def params(self) -> dict[str, Any]:
        """The attack's parameters, for result tables."""
        return {"loss": self.loss_name, "targeted": self.targeted, "seed": self.seed}

    # ------------------------------------------------------------------ template
    def __call__(self, x: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
        x, y, targets = self._validate(x, y, targets)
        with eval_mode(self.model), torch.no_grad():
            logits = self.forward(x[:1]).logits
            check_logits(logits)
            num_classes = logits.shape[1]
            if self.targeted and targets is None:
                targets = random_targets(y, num_classes, self.generator)
            if targets is not None and bool(((targets < 0) | (targets >= num_classes)).any()):
                raise UserError(f"targets must be class indices in [0, {num_classes - 1}]")
            x_adv = self.perturb(x.detach().clone(), y, targets if self.targeted else None)
        return x_adv.detach()

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        """Craft adversarial examples for the validated batch (subclasses implement)."""
        raise NotImplementedError  # abstract

    def _validate(self, x: Tensor, y: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise UserError("inputs must be a floating-point tensor")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise UserError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        lo, hi = self.bounds
        if x.numel() and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
            raise UserError(f"inputs lie outside the declared bounds [{lo:g}, {hi:g}] "
                            f"(min {float(x.min()):.4g}, max {float(x.max()):.4g}); pass bounds=(low, high)")
        y = y.long()
        if targets is not None:
            if not self.targeted:
                raise UserError("targets given to an untargeted attack; build it with targeted=True")
            targets = targets.long().to(y.device)
            if targets.shape != y.shape:
                raise UserError(f"targets must have shape {tuple(y.shape)}, got {tuple(targets.shape)}")
            if bool((targets == y).any()):
                raise UserError("a target equals the true label; targets must differ from the labels")
        return x, y, targets


class IterativeAttack(Attack):
    """Shared core of the L-inf / L2 gradient attacks (PGD, BIM, FGSM, MIM).

    Subclasses may override :meth:`init_state` and :meth:`direction` (e.g. MIM's
    momentum).  The default direction is the normalised gradient.
    """

    def __init__(self, model: nn.Module, eps: float, steps: int, step_size: float | None = None, *,
                 norm: str = "linf", random_start: bool = True, restarts: int = 1,
                 loss: str | AttackLoss | None = None, targeted: bool = False, final_iterate: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        super().__init__(model, loss=loss, targeted=targeted, bounds=bounds, seed=seed)
        #: return the last iterate of every example (adversarial training, transfer)
        #: instead of its first fooling iterate (evaluation)
        self.final_iterate = bool(final_iterate)
        self.eps = check_range("eps", float(eps), low=0.0)
        if int(steps) != steps or steps < 1:
            raise UserError(f"steps must be an integer >= 1, got {steps!r}")
        self.steps = int(steps)
        self.step_size = check_range("step_size", float(eps / steps if step_size is None else step_size), low=0.0)
        self.norm = check_norm(norm)
        self.random_start = bool(random_start)
        if int(restarts) != restarts or restarts < 1:
            raise UserError(f"restarts must be an integer >= 1, got {restarts!r}")
        self.restarts = int(restarts)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "steps": self.steps, "step_size": self.step_size,
                "norm": self.norm, "random_start": self.random_start, "restarts": self.restarts}

    def init_state(self, x: Tensor) -> dict[str, Tensor]:
        """Per-run state (e.g. momentum); default none."""
        return {}

    def direction(self, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        """Ascent direction for a step of size ``step_size``."""
        return normalize_grad(grad, self.norm)

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        best = x.clone()
        success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        todo = torch.arange(x.shape[0], device=x.device)
        if self.eps > 0:
            for _ in range(self.restarts):
                if todo.numel() == 0:
                    break
                t = None if targets is None else targets[todo]
                adv, fooled = self.run(x[todo], labels[todo], t)
                best[todo] = adv
                success[todo[fooled]] = True
                todo = todo[~fooled]
        self.success = success
        return best

    def run(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """One restart: returns ``(x_adv, fooled)``.

        Unless ``final_iterate``, an example leaves the batch at its first fooling
        iterate, which is what it returns (so later steps cost nothing for it);
        ``fooled`` marks the examples some iterate fooled.  State tensors from
        :meth:`init_state` must have the batch as their first dimension.
        """
        result = x.clone()
        x_adv = x
        if self.random_start:
            x_adv = self.clamp(x + random_in_ball(x.shape, self.eps, self.norm, self.generator, x.device, x.dtype))
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        idx = torch.arange(x.shape[0], device=x.device)
        x0, lab, tgt = x, labels, targets
        state = self.init_state(x)
        for _ in range(self.steps):
            _, logits, grad = self.loss_and_grad(x_adv, lab, tgt)
            if not self.final_iterate:
                hit = self.is_adversarial(logits, lab, tgt)
                if bool(hit.any()):
                    result[idx[hit]] = x_adv[hit]
                    fooled[idx[hit]] = True
                    keep = ~hit
                    idx, x_adv, x0, lab, grad = idx[keep], x_adv[keep], x0[keep], lab[keep], grad[keep]
                    tgt = None if tgt is None else tgt[keep]
                    state = {k: v[keep] for k, v in state.items()}
                    if idx.numel() == 0:
                        return result, fooled
            step = self.step_size * self.direction(grad, state)
            x_adv = self.clamp(x0 + project(x_adv + step - x0, self.eps, self.norm))
        hit = self.is_adversarial(self.forward(x_adv).logits, lab, tgt)
        result[idx] = x_adv
        fooled[idx[hit]] = True
        return result, fooled
