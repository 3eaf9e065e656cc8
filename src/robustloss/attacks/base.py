"""The attack base classes: one call shape and one result for every attack.

Build an attack with the model and its parameters, then either call it for the
adversarial inputs or :meth:`Attack.run` it for the full :class:`AttackResult`::

    attack = PGD(classifier, eps=0.3, steps=40, step_size=0.01)
    x_adv = attack(x, y)                    # the short call shape
    result = attack.run(x, y)               # adversarial, success, distortion, prediction, queries

:class:`Attack` (template method, after foolbox 3's typed bases) validates the
inputs at the boundary, draws random targets for targeted attacks without given
ones (seeded, never the true label), puts the model in eval mode and restores it
afterwards, calls :meth:`Attack.perturb` and then measures the result the same way
for every attack: success is "misclassified" (untargeted) or "the target is
predicted" (targeted) at the returned point, distortion is the returned point's
distance to ``x`` in the attack's norm.  Every call starts the attack's random
stream afresh from ``seed``, so the same attack object called twice on the same
input gives the same output.  Attacks differentiate only with respect to the
input, so model parameters and their ``.grad`` are never touched; inputs are
never modified in place.

:class:`IterativeAttack` is the shared core of the gradient attacks (PGD, BIM,
FGSM, MIM, APGD, multi-target; after advertorch's shared iterative core with a
``loss_fn`` hook): random start, ``steps`` gradient steps with a norm-specific
update and projection, restarts, and keeping for every example the first iterate
that fools the model (so a point is robust only if it survives every iterate of
every restart); a fooled example leaves the batch, so later steps cost nothing
for it.  Restarts run only on the points still robust (AutoAttack's
survivors-only loop).  With ``final_iterate=True`` every example runs every step
and the last iterate is returned (adversarial training, transfer).

EoT (Expectation over Transformation, Athalye, Engstrom, Ilyas & Kwok 2018,
"Synthesizing robust adversarial examples"; used against randomised defences in
Athalye, Carlini & Wagner 2018, Sec. 5.3): the gradient attacks take ``eot``
(default 1), the number of forward/backward passes whose losses, logits and
input gradients :meth:`Attack.loss_and_grad` and :meth:`Attack.loss_and_logits`
average.  Against a deterministic model the average changes nothing (and costs
``eot`` times the passes); against a randomised one (e.g.
:class:`~robustloss.models.randomization.RandomResizePad`) it is the gradient of
the expected loss over the model's randomness.  ``eot=1`` runs exactly the code
of a single pass (results identical bit for bit).  Success checks under EoT:
inside the attack (an example leaving the batch at its first fooling iterate,
APGD's and the final iterate's check) the *mean logits* over the ``eot`` passes
decide, i.e. the point must fool the model on average; the returned
:class:`AttackResult` (``success``, ``prediction``) is always measured with *one*
fresh forward pass at the returned point - how a randomised model classifies one
query - so the engine's robust accuracy is that of a single draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustloss.attacks.losses import AttackLoss, ModelOutput, check_logits, forward, locate_for, resolve_loss
from robustloss.classifier import Located, eval_mode
from robustloss.device import autocast
from robustloss.errors import UserError, check_int, check_range, unknown_choice

NORMS = ("linf", "l2")
#: the largest accepted number of EoT samples per gradient (a bound against typos such as eot=1000000)
MAX_EOT = 10_000


def check_eot(eot: object) -> int:
    """``eot`` as an int in ``[1, MAX_EOT]`` (the number of EoT samples), else a one-line :class:`UserError`."""
    return check_int("eot (the number of EoT samples per gradient)", eot, 1, MAX_EOT)


def random_targets(labels: Tensor, num_classes: int, generator: torch.Generator,
                   generators: Sequence[torch.Generator] | None = None) -> Tensor:
    """A uniformly random class != label for every example.

    Drawn from ``generator``, or, when ``generators`` (one per example) are given,
    each example's from its own generator.
    """
    if generators is not None:
        shift = torch.tensor([int(torch.randint(1, num_classes, (), generator=g)) for g in generators],
                             dtype=torch.long)
    else:
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
                   device: torch.device, dtype: torch.dtype,
                   generators: Sequence[torch.Generator] | None = None) -> Tensor:
    """Uniform sample in the L-inf ball, or a uniformly random point in the L2 ball.

    With ``generators`` (one per row of ``shape``) every row is drawn from its own generator.
    """
    if generators is not None:
        if len(generators) != shape[0]:
            raise ValueError(f"{len(generators)} generators for {shape[0]} rows")
        rows = [random_in_ball(torch.Size((1, *shape[1:])), eps, norm, g, device, dtype) for g in generators]
        return torch.cat(rows) if rows else torch.zeros(shape, device=device, dtype=dtype)
    if norm == "linf":
        return ((torch.rand(shape, generator=generator) * 2 - 1) * eps).to(device=device, dtype=dtype)
    direction = torch.randn(shape, generator=generator)
    direction = direction / _bcast(direction.flatten(1).norm(dim=1).clamp_min(1e-12), direction)
    dim = direction[0].numel()
    radius = torch.rand(shape[0], generator=generator).pow(1.0 / dim) * eps
    return (direction * _bcast(radius, direction)).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class AttackResult:
    """What one call of an attack gives, per example of the batch (all on the input's device)."""

    #: the returned inputs ``(N, ...)``: each attack documents which point it returns
    adversarial: Tensor
    #: ``(N,)`` bool: the model misclassifies ``adversarial`` (untargeted) / predicts the target (targeted)
    success: Tensor
    #: ``(N,)`` ``||adversarial - x||`` in the attack's norm (:attr:`Attack.norm`)
    distortion: Tensor
    #: ``(N,)`` the model's predicted class at ``adversarial``
    prediction: Tensor
    #: model evaluations (input rows through the model, forward passes only) this call used, in total
    queries: int
    #: ``(N,)`` int64: the model evaluations spent on each example (``queries`` minus the call's
    #: :attr:`Attack.overhead_queries`, e.g. the one-row probe of the number of classes); ``None`` when the
    #: attack does not attribute every evaluation to its example (a custom subclass that forwards sub-batches
    #: without saying which rows they hold)
    example_queries: Tensor | None = None


class Attack:
    """Base of every attack: ``attack(x, y, targets=None) -> x_adv``; ``attack.run(...) -> AttackResult``.

    Parameters common to all attacks: ``loss`` (a named loss or callable, see
    :mod:`robustloss.attacks.losses`; default: the objective's adaptive loss),
    ``targeted``, ``bounds`` of valid inputs (default ``(0, 1)``) and ``seed``
    for all of the attack's randomness.
    """

    #: registry name, e.g. ``"pgd"``
    name: ClassVar[str] = ""
    #: loss used when ``loss=None``
    default_loss: ClassVar[str] = "adaptive"
    #: ``True`` for attacks that search the smallest successful perturbation (C&W, DeepFool)
    minimum_norm: ClassVar[bool] = False
    #: the norm distortions are measured in (instances may set it, e.g. from a ``norm`` option)
    norm: str = "linf"
    #: EoT samples averaged per loss / gradient evaluation (the gradient attacks' ``eot`` option; 1: one pass)
    eot: int = 1

    def __init__(self, model: nn.Module, *, loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        if not isinstance(model, nn.Module):
            raise UserError(f"the model must be a torch.nn.Module returning logits, got {type(model).__name__}")
        self.model = model
        self.loss_name = loss if isinstance(loss, str) else (self.default_loss if loss is None else "custom")
        #: where our Classifier sits in the model (``None``: a model without one, or attacked on its logits)
        self.located: Located | None = locate_for(model, loss, self.default_loss)
        self.loss_fn: AttackLoss = resolve_loss(self.located, loss, self.default_loss)
        if not isinstance(targeted, bool):
            raise UserError(f"targeted must be true or false, got {targeted!r}")
        self.targeted = targeted
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise UserError(f"bounds must be a pair (low, high), got {bounds!r}")
        lo = check_range("bounds[0]", bounds[0])
        hi = check_range("bounds[1]", bounds[1])
        if not lo < hi:
            raise UserError(f"bounds must satisfy low < high, got {bounds!r}")
        self.bounds = (lo, hi)
        self.seed = check_int("seed", seed, 0, 2 ** 63 - 1)
        self.generator = torch.Generator().manual_seed(self.seed)
        #: one generator per example of the batch being attacked (``run(..., example_seeds=...)``), else ``None``
        self.example_generators: list[torch.Generator] | None = None
        #: the batch rows the current sub-batch holds (``None``: all); set by attacks that work on subsets
        self.active_rows: Tensor | None = None
        self.queries = 0
        #: per-example model evaluations of the current :meth:`run` (``None`` outside one)
        self.example_queries: Tensor | None = None
        #: evaluations of the current run spent on no example in particular (probes)
        self.overhead_queries = 0
        #: evaluations the current run could not attribute to rows (makes ``example_queries`` ``None``)
        self.unattributed_queries = 0
        #: ``False`` inside :meth:`craft`: a final-iterate attack skips its last success check
        self.measure_last_iterate = True
        #: mixed precision of the model's forward passes (``"bf16"``, ``"fp16"``; ``None``: fp32, the default).
        #: A runtime setting, not an attack option: adversarial training sets it to craft examples faster
        #: (``TrainConfig.amp``); evaluations leave it at fp32.
        self.amp: str | None = None

    # ------------------------------------------------------------------ helpers
    def forward(self, x: Tensor, rows: Tensor | None = None, *, overhead: bool = False) -> ModelOutput:
        """One forward pass (counted in :attr:`AttackResult.queries`); features too for our classifiers.

        Each input row is also counted for the example it belongs to
        (:attr:`AttackResult.example_queries`): ``rows`` names the batch row of every
        input row (repeats allowed); without it, the rows of :attr:`active_rows` when
        the sizes match, else the whole batch when the sizes match.  ``overhead``
        marks a pass spent on no example in particular (a probe).

        With :attr:`amp` the forward runs under ``torch.autocast`` and its outputs are cast back
        to fp32, so the attack losses (and their gradients' first steps) are computed in fp32.
        """
        self.queries += x.shape[0]
        self._attribute(x.shape[0], rows, overhead)
        if self.amp is None:
            return forward(self.model, x, self.located)
        with autocast(x.device, self.amp):
            out = forward(self.model, x, self.located)
        return ModelOutput(out.logits.float(), None if out.features is None else out.features.float())

    def _attribute(self, k: int, rows: Tensor | None, overhead: bool) -> None:
        counts = self.example_queries
        if counts is None:
            return
        if overhead:
            self.overhead_queries += k
            return
        if rows is None and self.active_rows is not None and self.active_rows.numel() == k:
            rows = self.active_rows
        if rows is None:
            if k == counts.numel():
                counts += 1
            else:
                self.unattributed_queries += k
            return
        if rows.numel() != k:
            raise ValueError(f"forward: {rows.numel()} row indices for {k} input rows")
        counts.index_add_(0, rows.to(counts.device, torch.long), torch.ones(k, dtype=counts.dtype,
                                                                              device=counts.device))

    def loss_and_grad(self, x: Tensor, labels: Tensor, targets: Tensor | None,
                      rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(per-example loss, logits, d loss / d x): one forward and one backward, or with :attr:`eot` > 1 the
        means of ``eot`` of them (EoT; ``eot`` times the queries).  ``rows``: as in :meth:`forward`."""
        if self.eot == 1:
            return self._loss_and_grad_once(x, labels, targets, rows)
        loss, logits, grad = self._loss_and_grad_once(x, labels, targets, rows)
        for _ in range(self.eot - 1):
            more = self._loss_and_grad_once(x, labels, targets, rows)
            loss, logits, grad = loss + more[0], logits + more[1], grad + more[2]
        return loss / self.eot, logits / self.eot, grad / self.eot

    def _loss_and_grad_once(self, x: Tensor, labels: Tensor, targets: Tensor | None,
                            rows: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One forward and one backward: (per-example loss, logits, d loss / d x)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            out = self.forward(x, rows)
            loss = self.loss_fn(out, labels, targets)
            (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), out.logits.detach(), grad.detach()

    def loss_and_logits(self, x: Tensor, labels: Tensor, targets: Tensor | None,
                        rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One forward, no backward: (per-example loss, logits); with :attr:`eot` > 1 the means of ``eot``.
        ``rows``: as in :meth:`forward`."""
        out = self.forward(x, rows)
        loss, logits = self.loss_fn(out, labels, targets).detach(), out.logits.detach()
        for _ in range(self.eot - 1):
            out = self.forward(x, rows)
            loss, logits = loss + self.loss_fn(out, labels, targets).detach(), logits + out.logits.detach()
        return (loss, logits) if self.eot == 1 else (loss / self.eot, logits / self.eot)

    def mean_logits(self, x: Tensor) -> Tensor:
        """The logits of one forward pass, or with :attr:`eot` > 1 their mean over ``eot`` passes."""
        logits = self.forward(x).logits
        for _ in range(self.eot - 1):
            logits = logits + self.forward(x).logits
        return logits if self.eot == 1 else logits / self.eot

    def is_adversarial(self, logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        """Success per example: misclassified (untargeted) or the target predicted (targeted)."""
        pred = logits.argmax(dim=1)
        return pred == targets if targets is not None else pred != labels

    def row_generators(self) -> list[torch.Generator] | None:
        """The per-example generators of the rows in :attr:`active_rows` (``None`` without example seeds)."""
        gens = self.example_generators
        if gens is None or self.active_rows is None:
            return gens
        return [gens[i] for i in self.active_rows.tolist()]

    def clamp(self, x: Tensor) -> Tensor:
        return x.clamp(self.bounds[0], self.bounds[1])

    def params(self) -> dict[str, Any]:
        """The attack's parameters, for result tables."""
        return {"loss": self.loss_name, "targeted": self.targeted, "seed": self.seed}

    # ------------------------------------------------------------------ template
    def __call__(self, x: Tensor, y: Tensor, targets: Tensor | None = None) -> Tensor:
        """The adversarial inputs (``self.run(x, y, targets).adversarial``)."""
        return self.run(x, y, targets).adversarial

    def run(self, x: Tensor, y: Tensor, targets: Tensor | None = None, *,
            generator: torch.Generator | None = None, example_seeds: Tensor | None = None) -> AttackResult:
        """Attack the batch ``(x, y)`` (towards ``targets`` if given) and measure the result.

        The attack's randomness comes from ``generator`` when given (adversarial
        training passes one stream per epoch), else from a generator seeded with
        ``seed`` afresh for this call.  ``example_seeds`` (an integer tensor, one
        seed per example) give every example its own stream instead, for random
        starts (every restart), random targets, SPSA's directions, SimBA's
        coordinate order and the corruptions' noise: an example's result then
        does not depend on which other examples share its batch (the evaluation
        engine derives them from the attack's seed and the example's index).
        """
        x, y, targets = self._begin(x, y, targets, generator, example_seeds)
        with eval_mode(self.model), torch.no_grad():
            x_adv, targets = self._craft(x, y, targets)
            self.active_rows = None
            logits = self.forward(x_adv).logits
        counts, self.example_queries = self.example_queries, None
        assert counts is not None   # set by _begin
        return AttackResult(adversarial=x_adv, success=self.is_adversarial(logits, y, targets),
                            distortion=lp_norm(x_adv - x, self.norm), prediction=logits.argmax(dim=1),
                            queries=self.queries,
                            example_queries=None if self.unattributed_queries else counts.to(x.device))

    def craft(self, x: Tensor, y: Tensor, targets: Tensor | None = None, *,
              generator: torch.Generator | None = None, example_seeds: Tensor | None = None) -> Tensor:
        """The adversarial examples of :meth:`run` (the same tensor, same arguments), without measuring them.

        For adversarial training, which needs the examples only: it saves :meth:`run`'s
        forward pass on the result (and, with ``final_iterate`` and one restart, the
        attack's own success check after the last step; BENCHMARKS.md "Speed options").
        :attr:`queries` counts the forwards made.
        """
        x, y, targets = self._begin(x, y, targets, generator, example_seeds)
        self.measure_last_iterate = False
        try:
            with eval_mode(self.model), torch.no_grad():
                x_adv, _ = self._craft(x, y, targets)
        finally:
            self.measure_last_iterate = True
            self.active_rows = None
            self.example_queries = None
        return x_adv

    def _begin(self, x: Tensor, y: Tensor, targets: Tensor | None, generator: torch.Generator | None,
               example_seeds: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Validate the batch and reset the per-call state (generators, query counters)."""
        x, y, targets = self._validate(x, y, targets)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        self.active_rows = None
        self.example_generators = None
        if example_seeds is not None:
            if (not isinstance(example_seeds, Tensor) or example_seeds.shape != (x.shape[0],)
                    or example_seeds.is_floating_point() or example_seeds.dtype == torch.bool):
                raise UserError(f"example_seeds must be an integer tensor of shape ({x.shape[0]},)")
            self.example_generators = [torch.Generator().manual_seed(int(s) & 0x7FFFFFFFFFFFFFFF)
                                       for s in example_seeds.tolist()]
        self.queries = 0
        self.example_queries = torch.zeros(x.shape[0], dtype=torch.long)
        self.overhead_queries = self.unattributed_queries = 0
        return x, y, targets

    def _craft(self, x: Tensor, y: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Check the labels against the model's classes, draw random targets, perturb: ``(x_adv, targets)``."""
        logits = self.forward(x[:1], overhead=True).logits
        check_logits(logits)
        num_classes = logits.shape[1]
        if bool(((y < 0) | (y >= num_classes)).any()):
            raise UserError(f"labels must be class indices in [0, {num_classes - 1}]")
        if targets is not None and bool(((targets < 0) | (targets >= num_classes)).any()):
            raise UserError(f"targets must be class indices in [0, {num_classes - 1}]")
        if self.targeted and targets is None:
            targets = random_targets(y, num_classes, self.generator, self.example_generators)
        targets = targets if self.targeted else None
        return self.perturb(x.detach().clone(), y, targets).detach(), targets

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        """Craft adversarial examples for the validated batch (subclasses implement)."""
        raise NotImplementedError  # abstract

    def _validate(self, x: Tensor, y: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise UserError("inputs must be a floating-point tensor")
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None)
        if dtype is not None and x.dtype != dtype:
            raise UserError(f"inputs are {x.dtype} but the model computes in {dtype}; pass x.to({dtype})")
        if not isinstance(y, Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise UserError(f"labels must be a tensor of shape ({x.shape[0]},), got {shape}")
        if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
            raise UserError(f"labels must be an integer tensor of class indices, got {y.dtype}")
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise UserError("inputs contain NaN or infinite values")
        lo, hi = self.bounds
        if x.numel() and (float(x.min()) < lo - 1e-6 or float(x.max()) > hi + 1e-6):
            raise UserError(f"inputs lie outside the declared bounds [{lo:g}, {hi:g}] "
                            f"(min {float(x.min()):.4g}, max {float(x.max()):.4g}); pass bounds=(low, high)")
        y = y.long().to(x.device)
        if targets is not None:
            if not self.targeted:
                raise UserError("targets given to an untargeted attack; build it with targeted=True")
            if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.dtype == torch.bool:
                raise UserError("targets must be an integer tensor of class indices")
            targets = targets.long().to(y.device)
            if targets.shape != y.shape:
                raise UserError(f"targets must have shape {tuple(y.shape)}, got {tuple(targets.shape)}")
            if bool((targets == y).any()):
                raise UserError("a target equals the true label; targets must differ from the labels")
        return x, y, targets


class IterativeAttack(Attack):
    """Shared core of the L-inf / L2 gradient attacks (PGD, BIM, FGSM, MIM).

    Subclasses may override :meth:`init_state` and :meth:`direction` (e.g. MIM's
    momentum).  The default direction is the normalised gradient.  ``eot``: the
    number of EoT samples each gradient averages (see the module docstring;
    default 1, a plain gradient; at most :data:`MAX_EOT`).
    """

    def __init__(self, model: nn.Module, eps: float, steps: int, step_size: float | None = None, *,
                 norm: str = "linf", random_start: bool = True, restarts: int = 1,
                 loss: str | AttackLoss | None = None, targeted: bool = False, final_iterate: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0, eot: int = 1) -> None:
        super().__init__(model, loss=loss, targeted=targeted, bounds=bounds, seed=seed)
        self.eot = check_eot(eot)
        #: return the last iterate of every example (adversarial training, transfer)
        #: instead of its first fooling iterate (evaluation)
        self.final_iterate = bool(final_iterate)
        self.eps = check_range("eps", eps, low=0.0)
        self.steps = check_int("steps", steps, 1)
        self.step_size = check_range("step_size", self.eps / self.steps if step_size is None else step_size,
                                     low=0.0)
        self.norm = check_norm(norm)
        self.random_start = bool(random_start)
        self.restarts = check_int("restarts", restarts, 1)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "steps": self.steps, "step_size": self.step_size,
                "norm": self.norm, "random_start": self.random_start, "restarts": self.restarts, "eot": self.eot}

    def random_start_noise(self, x: Tensor) -> Tensor:
        """A random point of the eps-ball for every row of ``x`` (the rows :attr:`active_rows` of the batch)."""
        return random_in_ball(x.shape, self.eps, self.norm, self.generator, x.device, x.dtype,
                              self.row_generators())

    def init_state(self, x: Tensor) -> dict[str, Tensor]:
        """Per-run state (e.g. momentum); default none."""
        return {}

    def direction(self, grad: Tensor, state: dict[str, Tensor]) -> Tensor:
        """Ascent direction for a step of size ``step_size``."""
        return normalize_grad(grad, self.norm)

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        best = x.clone()
        todo = torch.arange(x.shape[0], device=x.device)
        if self.eps > 0:
            for _ in range(self.restarts):
                if todo.numel() == 0:
                    break
                t = None if targets is None else targets[todo]
                self.active_rows = todo
                adv, fooled = self.run_restart(x[todo], labels[todo], t)
                best[todo] = adv
                todo = todo[~fooled]
        return best

    def run_restart(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> tuple[Tensor, Tensor]:
        """One restart: returns ``(x_adv, fooled)``.

        Unless ``final_iterate``, an example leaves the batch at its first fooling
        iterate, which is what it returns (so later steps cost nothing for it);
        ``fooled`` marks the examples some iterate fooled.  State tensors from
        :meth:`init_state` must have the batch as their first dimension.
        """
        result = x.clone()
        x_adv = x
        if self.random_start:
            x_adv = self.clamp(x + self.random_start_noise(x))
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        idx = torch.arange(x.shape[0], device=x.device)
        batch_rows = idx if self.active_rows is None else self.active_rows   # rows of the attacked batch
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
                    self.active_rows = batch_rows[idx]
                    if idx.numel() == 0:
                        return result, fooled
            step = self.step_size * self.direction(grad, state)
            x_adv = self.clamp(x0 + project(x_adv + step - x0, self.eps, self.norm))
        result[idx] = x_adv
        if self.final_iterate and self.restarts == 1 and not self.measure_last_iterate:
            return result, fooled   # craft(): nobody reads ``fooled`` after the only restart
        hit = self.is_adversarial(self.mean_logits(x_adv), lab, tgt)
        fooled[idx[hit]] = True
        return result, fooled
