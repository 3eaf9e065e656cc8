"""SPSA: gradient-free L-inf attack (Uesato et al. 2018, "Adversarial risk and the dangers of
evaluating against weak attacks")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.adam import Adam
from robustloss.attacks.base import Attack
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import UserError, check_int, check_range


class SPSA(Attack):
    r"""SPSA with Adam (Uesato et al. 2018): an L-inf attack that only *evaluates* the model.

    Each of ``steps`` iterations estimates the gradient of the attack loss ``L``
    (to maximise) at the current iterate ``x_t`` from ``samples`` model
    evaluations: ``samples / 2`` Rademacher directions ``v_i in {-1, +1}^D``,
    each evaluated antithetically at ``x_t + delta v_i`` and ``x_t - delta v_i``::

        g = 1/P sum_i (L(x_t + delta v_i) - L(x_t - delta v_i)) / (2 delta) * v_i,   P = samples / 2

    then takes an Adam *ascent* step (:class:`~robustloss.attacks.adam.Adam`) of
    learning rate ``lr`` on the perturbation and projects onto the L-inf ball of
    radius ``eps`` around ``x`` and onto the bounds.  An example stops as soon as an iterate fools the model (checked
    with one extra evaluation per step, as Uesato et al.'s early stopping) and
    that iterate is returned; otherwise the last iterate.  The probes
    ``x_t +- delta v`` are not clipped to the bounds (they are only evaluated).

    ``L`` is the objective's form-1 adaptive loss by default (the MMC paper, App. B.4:
    ``L_Ada^{un,1}`` / ``L_Ada^{tar,1}``, i.e. CE for SCE and ``L_MMC(z, y)`` /
    ``-L_MMC(z, y_t)`` for MMC).  Uses forward passes only (no autograd).

    ``samples`` counts model evaluations per step (the "batch size" of the MMC
    paper, Sec. 4.4 and Table 3; as in cleverhans, the attack library of the MMC
    authors' code according to the reproducibility report, half of them are the
    mirrored ``-v``), so it must be even.  Memory is bounded by ``chunk``: the
    model never sees more than ``chunk`` inputs at once.  When ``samples <= chunk``, ``chunk // samples`` examples are
    evaluated together; otherwise one example at a time, its samples split into
    forwards of ``chunk`` evaluations, with the random directions drawn chunk by
    chunk (memory O(chunk x D), never O(samples x batch)).  Every example has its
    own random stream (seeded from the attack's generator), so the result does
    not depend on ``chunk`` (nor on the other examples of the batch) - exactly,
    as long as the model's outputs for a row do not depend on how many rows
    share its forward pass (CPU kernels round differently for tiny batches).

    Defaults: ``samples=128``, ``lr=0.01``, ``delta=0.01`` (the MMC paper,
    Sec. 4.4, after Uesato et al. 2018; the PC paper, "Performance on black-box
    attacks", uses the same lr and delta), ``steps=10`` (the SPSA_10 of the MMC
    paper's Table 2); ``eps`` has no default (the MMC paper: 8/255 and 16/255 on
    CIFAR-10, Table 2; the PC paper: 0.3 on MNIST, Table 3).
    ``samples=4096`` / ``8192`` reproduce the MMC paper's Table 3.
    """

    name = "spsa"

    def __init__(self, model: nn.Module, eps: float, steps: int = 10, *, samples: int = 128,
                 lr: float = 0.01, delta: float = 0.01, chunk: int = 512,
                 loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        super().__init__(model, loss=loss, targeted=targeted, bounds=bounds, seed=seed)
        self.eps = check_range("eps", eps, low=0.0)
        self.steps = check_int("steps", steps, 1)
        self.samples = check_int("samples", samples, 2)
        if self.samples % 2:
            raise UserError(f"samples must be even (antithetic pairs +-v), got {samples!r}")
        self.lr = check_range("lr", lr, low=0.0, low_inclusive=False)
        self.delta = check_range("delta", delta, low=0.0, low_inclusive=False)
        self.chunk = check_int("chunk", chunk, 2)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "steps": self.steps, "samples": self.samples,
                "lr": self.lr, "delta": self.delta, "chunk": self.chunk, "norm": "linf"}

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        n = x.shape[0]
        # one independent stream per example, so results are independent of grouping and chunking
        gens = self.row_generators()
        if gens is not None:   # per-example seeds given to run(): each example's stream from its own seed
            seeds = [int(torch.randint(0, 2 ** 62, (), generator=g)) for g in gens]
        else:
            seeds = torch.randint(0, 2 ** 62, (n,), generator=self.generator).tolist()
        if self.eps == 0 or n == 0:
            return x.clone()
        pairs = self.samples // 2
        per_forward = min(pairs, self.chunk // 2)                # pairs per example per forward
        group = max(1, self.chunk // (2 * per_forward))          # examples per forward
        out = torch.empty_like(x)
        for start in range(0, n, group):
            sl = slice(start, start + group)
            t = None if targets is None else targets[sl]
            out[sl] = self.run_group(x[sl], labels[sl], t, seeds[sl], per_forward,
                                     torch.arange(n, device=x.device)[sl])
        return out

    def run_group(self, x: Tensor, labels: Tensor, targets: Tensor | None, seeds: list[int],
                  per_forward: int, rows: Tensor) -> Tensor:
        """SPSA on a small group of examples evaluated together (at most ``chunk`` inputs a forward);
        ``rows``: the group's rows in the attacked batch."""
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        pairs = self.samples // 2
        shape = x.shape[1:]
        x_adv = x.clone()
        adam = Adam(x, self.lr)
        _, logits = self.loss_and_logits(x_adv, labels, targets, rows)
        active = (~self.is_adversarial(logits, labels, targets)).nonzero().squeeze(1).tolist()
        for _ in range(self.steps):
            if not active:
                break
            grad = torch.zeros((len(active), *shape), dtype=torch.float64, device=x.device)
            xa = x_adv[active]
            la = labels[active]
            ta = None if targets is None else targets[active]
            for first in range(0, pairs, per_forward):
                k = min(per_forward, pairs - first)
                dirs = torch.stack([torch.randint(0, 2, (k, *shape), generator=gens[i]) for i in active])
                dirs = (dirs * 2 - 1).to(device=x.device, dtype=x.dtype)         # (A, k, *shape)
                probe = self.delta * dirs
                batch = torch.cat([xa[:, None] + probe, xa[:, None] - probe], dim=1)  # (A, 2k, *shape)
                vals, _ = self.loss_and_logits(batch.flatten(0, 1), la.repeat_interleave(2 * k),
                                               None if ta is None else ta.repeat_interleave(2 * k),
                                               rows[active].repeat_interleave(2 * k))
                vals = vals.view(len(active), 2 * k).to(torch.float64)
                diff = (vals[:, :k] - vals[:, k:]) / (2 * self.delta)           # (A, k)
                grad += torch.einsum("ak,ak...->a...", diff, dirs.to(torch.float64))
            new = xa + adam.step(active, (grad / pairs).to(x.dtype))          # Adam ascent step, per example
            new = self.clamp(x[active] + (new - x[active]).clamp(-self.eps, self.eps))
            x_adv[active] = new
            _, logits = self.loss_and_logits(new, la, ta, rows[active])
            fooled = self.is_adversarial(logits, la, ta).tolist()
            active = [i for i, f in zip(active, fooled) if not f]
        return x_adv
