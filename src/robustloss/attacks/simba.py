"""SimBA, the simple black-box attack (Guo et al. 2019, "Simple black-box adversarial attacks")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustloss.attacks.base import Attack
from robustloss.attacks.losses import AttackLoss
from robustloss.errors import check_int, check_range


class SimBA(Attack):
    r"""SimBA-pixel (Guo et al. 2019, Alg. 1): greedy random coordinate search on output probabilities.

    Every image gets its own random order of the pixel basis ``Q`` (all ``D =
    C*H*W`` input coordinates, a permutation drawn from the attack's seeded
    generator).  Starting from ``p = p(y | x)``, for the next coordinate ``q``::

        for alpha in (+eps, -eps):
            p' = p(y | clip(x + alpha q))          # one query
            if p' < p:  x <- clip(x + alpha q); p <- p'; break

    Targeted: ``p(y_t | .)`` must *increase* instead.  An image stops when it is
    misclassified (untargeted) / classified as the target (targeted), when it
    has used ``max_queries`` queries, or when its coordinates are exhausted.
    ``p`` is the softmax of the model's prediction logits (for MMC the softmax
    of ``-L_MMC(z, l)``, the model's own class probabilities).

    ``loss=None`` (default) is the paper's probability score.  A named attack
    loss (e.g. ``loss="adaptive"``, see :mod:`robustloss.attacks.losses`) makes
    SimBA greedily *increase* that loss instead: an adaptive variant for models
    whose softmax saturates (for MMC-10 ``p(y | x)`` is exactly 1.0 in float32 on
    most inputs, so no candidate ever lowers it and the paper's SimBA stalls).

    Query counting: every model evaluation made for an image counts one query,
    including the initial ``p(y | x)``; a candidate that the bounds clip back to
    the current point (e.g. ``-eps`` on a black MNIST pixel) is skipped without
    a query.  So at most ``max_queries`` queries per image (plus the one
    measuring the result, counted in :attr:`AttackResult.queries`).  Each coordinate is changed at most once, by at most ``eps``, so
    ``||x_adv - x||_inf <= eps``.

    Batched: all images step together, each over its own coordinate sequence;
    one forward pass per candidate sign for the images still running.

    Defaults: ``eps`` is required (Guo et al. 2019 use a step of 0.2);
    ``max_queries=300`` (the I-SCE paper, Sec. 4.2: 300 queries per image on
    MNIST, 500 on CIFAR-10).
    Only the pixel basis is implemented (not SimBA-DCT).
    """

    name = "simba"
    default_loss = "ce"   # unused unless ``loss`` is given: by default SimBA scores probabilities

    def __init__(self, model: nn.Module, *, eps: float, max_queries: int = 300,
                 loss: str | AttackLoss | None = None, targeted: bool = False,
                 bounds: tuple[float, float] = (0.0, 1.0), seed: int = 0) -> None:
        super().__init__(model, loss=loss, targeted=targeted, bounds=bounds, seed=seed)
        self.use_probability = loss is None
        if self.use_probability:
            self.loss_name = "probability"
        self.eps = check_range("eps", eps, low=0.0)
        self.max_queries = check_int("max_queries", max_queries, 1)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eps": self.eps, "max_queries": self.max_queries, "basis": "pixel",
                "norm": "linf"}

    def score(self, x: Tensor, labels: Tensor, targets: Tensor | None,
              rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(score to *minimise*, predicted class) per example: one query each.

        The score is ``p(y|x)`` (untargeted), ``-p(y_t|x)`` (targeted), or minus the attack loss.
        """
        out = self.forward(x, rows)
        pred = out.logits.argmax(dim=1)
        if not self.use_probability:
            return -self.loss_fn(out, labels, targets), pred
        probs = out.logits.softmax(dim=1)
        if targets is None:
            return probs.gather(1, labels[:, None]).squeeze(1), pred
        return -probs.gather(1, targets[:, None]).squeeze(1), pred

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        n = x.shape[0]
        dim = x[0].numel()
        shape = x.shape
        flat = x.flatten(1).clone()
        cls = labels if targets is None else targets
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
        if n == 0:
            return x.clone()
        gens = self.row_generators() or [self.generator] * n   # per-example seeds, else the attack's stream
        order = torch.stack([torch.randperm(dim, generator=g) for g in gens]).to(x.device)
        pos = torch.zeros(n, dtype=torch.long, device=x.device)

        def reached(pred: Tensor, c: Tensor) -> Tensor:
            return pred != c if targets is None else pred == c

        p, pred = self.score(x, labels, targets)
        queries += 1
        done = reached(pred, cls)
        if self.eps == 0:
            pos.fill_(dim)                                # nothing to try
        lo, hi = self.bounds
        while True:
            live = (~done & (queries < self.max_queries) & (pos < dim)).nonzero().squeeze(1)
            if live.numel() == 0:
                break
            coord = order[live, pos[live]]
            pos[live] += 1
            current = flat[live, coord]
            pending = torch.ones(live.numel(), dtype=torch.bool, device=x.device)
            for alpha in (self.eps, -self.eps):
                value = (current + alpha).clamp(lo, hi)
                try_ = pending & (value != current) & (queries[live] < self.max_queries)
                if not bool(try_.any()):
                    continue
                rows, cols, vals = live[try_], coord[try_], value[try_]
                cand = flat[rows].clone()
                cand[torch.arange(rows.numel(), device=x.device), cols] = vals
                p_new, pred_new = self.score(cand.view(-1, *shape[1:]), labels[rows],
                                             None if targets is None else targets[rows], rows)
                queries[rows] += 1
                better = p_new < p[rows]
                acc = rows[better]
                flat[acc, cols[better]] = vals[better]
                p[acc] = p_new[better]
                done[acc] = reached(pred_new[better], cls[acc])
                idx = try_.nonzero().squeeze(1)
                pending[idx[better]] = False
        return flat.view(shape)
