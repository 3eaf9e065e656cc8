"""Max-Mahalanobis (MM) centers.

The MMC loss (the MMC paper, Sec. 3.3) regresses features onto fixed centers
``mu*_1..mu*_L`` on the sphere of radius ``C_MM`` that solve

    mu* = argmin_mu  max_{i != j} <mu_i, mu_j>          (the MMC paper, Sec. 3.3)

For ``d >= L - 1`` the optimum is the regular simplex, with
``||mu_i|| = C_MM`` and ``<mu_i, mu_j> = -C_MM^2 / (L - 1)``; it is built by
Algorithm 1 of the MMC paper (App. B.1, "GenerateMMcenters"), computed here in float64.

For ``d < L - 1`` (e.g. ten classes in a 2-D feature space for visualisation)
Algorithm 1 cannot apply: no simplex fits.  We then *optimise* the criterion
above directly on the sphere (see :func:`spread_centers`): a seeded,
deterministic projected-gradient descent on a smooth maximum (log-sum-exp) of
the pairwise cosines.  This is our own extension, not part of the paper.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from robustloss.errors import UserError


def _check(num_classes: int, dim: int, c_mm: float) -> None:
    if int(num_classes) != num_classes or num_classes < 2:
        raise UserError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if int(dim) != dim or dim < 1:
        raise UserError(f"feature dim must be an integer >= 1, got {dim!r}")
    if not c_mm > 0 or not math.isfinite(c_mm):
        raise UserError(f"c_mm must be a finite number > 0, got {c_mm!r}")


def simplex_centers(num_classes: int, dim: int) -> Tensor:
    """Algorithm 1 of the MMC paper (App. B.1) with ``C_MM = 1``, float64, shape (L, d).

    ``mu_1 = e_1``; for ``i = 2..L`` and ``j < i``:
    ``mu_i(j) = -[1 + <mu_i, mu_j>(L-1)] / [mu_j(j)(L-1)]``, then
    ``mu_i(i) = sqrt(1 - ||mu_i||^2)``.  Needs ``d >= L - 1``; for ``d = L - 1``
    the last center's own coordinate would be ``sqrt(0)`` and is omitted.
    The rows are lower-triangular, as in the authors' ``craft_MMcenters.m``.
    """
    L = num_classes
    if dim < L - 1:
        raise UserError(f"Algorithm 1 needs dim >= num_classes - 1 ({L - 1}), got {dim}")
    mu = torch.zeros(L, dim, dtype=torch.float64)
    mu[0, 0] = 1.0
    for i in range(1, L):
        for j in range(i):
            mu[i, j] = -(1.0 + torch.dot(mu[i], mu[j]) * (L - 1)) / (mu[j, j] * (L - 1))
        rest = 1.0 - torch.dot(mu[i], mu[i])
        if i < dim:
            mu[i, i] = torch.sqrt(torch.clamp(rest, min=0.0))
    return mu


def spread_centers(num_classes: int, dim: int, *, seed: int = 0, steps: int = 3000) -> Tensor:
    """Unit vectors that (approximately) minimise the largest pairwise inner product (see :func:`_spread`).

    The optimisation takes seconds, so its result is computed once per process and
    arguments (it is deterministic); every call returns a fresh copy.
    """
    return _spread(int(num_classes), int(dim), int(seed), int(steps)).clone()


@functools.lru_cache(maxsize=16)
def _spread(num_classes: int, dim: int, seed: int, steps: int) -> Tensor:
    """Unit vectors that (approximately) minimise the largest pairwise inner product.

    Used when ``dim < num_classes - 1``.  Minimises the smooth maximum
    ``(1/t) log sum_{i<j} exp(t <mu_i, mu_j>)`` with ``t`` growing from 10 to 200,
    by gradient steps followed by projection back onto the unit sphere.  The
    start is drawn from a generator seeded with ``seed``, so the result is
    deterministic.  For ``dim = 2`` the optimum is ``L`` equally spaced points
    on the circle (largest cosine ``cos(2 pi / L)``).
    """
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(num_classes, dim, generator=gen, dtype=torch.float64)
    mu = mu / mu.norm(dim=1, keepdim=True)
    iu = torch.triu_indices(num_classes, num_classes, offset=1)
    for step in range(steps):
        t = 10.0 + 190.0 * step / max(steps - 1, 1)
        mu.requires_grad_(True)
        gram = mu @ mu.T
        smooth_max = torch.logsumexp(t * gram[iu[0], iu[1]], dim=0) / t
        (grad,) = torch.autograd.grad(smooth_max, mu)
        with torch.no_grad():
            mu = mu - 0.05 * grad
            mu = mu / mu.norm(dim=1, keepdim=True)
    return mu.detach()


def mm_centers(num_classes: int, dim: int, c_mm: float = 1.0, *, seed: int = 0) -> Tensor:
    """Max-Mahalanobis centers, float64 tensor of shape ``(num_classes, dim)``.

    ``||mu_i|| = c_mm`` for every class.  With ``dim >= num_classes - 1`` these
    are Algorithm 1 of the MMC paper (exactly the authors' precomputed files, scaled
    by ``c_mm``): ``<mu_i, mu_j> = -c_mm^2 / (L - 1)``.  With a smaller ``dim``
    they come from :func:`spread_centers` (seeded optimisation, our extension).

    Raises :class:`~robustloss.errors.UserError` for ``num_classes < 2``,
    ``dim < 1`` or ``c_mm <= 0``.
    """
    _check(num_classes, dim, c_mm)
    if dim >= num_classes - 1:
        unit = simplex_centers(num_classes, dim)
    else:
        unit = spread_centers(num_classes, dim, seed=seed)
    return unit * float(c_mm)


def random_centers(num_classes: int, dim: int, c_mm: float = 1.0, *, seed: int = 0) -> Tensor:
    """Random directions of norm ``c_mm`` (the "MMC-10(rand)" baseline), float64, seeded."""
    _check(num_classes, dim, c_mm)
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(num_classes, dim, generator=gen, dtype=torch.float64)
    return mu / mu.norm(dim=1, keepdim=True) * float(c_mm)


def _unit_mm_centers(count: int, dim: int) -> Tensor:
    """Unit-norm MM centers for ``count >= 1`` classes; a single class gets ``e_1`` (Algorithm 1 with L = 1)."""
    if count == 1:
        unit = torch.zeros(1, dim, dtype=torch.float64)
        unit[0, 0] = 1.0
        return unit
    return mm_centers(count, dim, 1.0)


def hierarchical_centers(tree: list[int] | tuple[int, ...], dim: int, c1: float = 10.0,
                         c2: float = 1.0) -> Tensor:
    """Hierarchical Max-Mahalanobis (HM) centers of a two-level class tree, float64 ``(L, dim)``.

    The MMC paper, App. B.3: ``tree[l]`` is the superclass ``s(l)`` of fine class ``l``
    (superclasses ``0..S-1``, each non-empty).  With
    ``mu^(1,S) = GenerateMMcenters(c1, dim, S)`` for the superclasses and, for a
    superclass with ``K`` children, ``mu^(2,K) = GenerateMMcenters(c2, dim, K)``,

        ``mu^H_l = mu^(1,S)_{s(l)} + mu^(2,K)_j``

    where ``j`` is ``l``'s rank among the fine classes of ``s(l)`` in increasing
    label order.  A superclass (or the root) with a single child uses
    ``c * e_1`` (Algorithm 1 with one class).  ``c2 < c1`` (the paper's
    ``C^2 << C^1``); the reproducibility report (Sec. 4.7) found ``c1`` in
    [5, 20] and ``c2`` in [0.1, 2] best.  Every superclass uses the same local centers ``mu^(2,K)`` (the
    paper allows, but does not require, a different rotation per superclass).

    Raises :class:`~robustloss.errors.UserError` for an empty tree, a negative
    or non-integer entry, a superclass index without any member, ``dim < 1``, or
    ``c1``/``c2`` not finite with ``0 < c2 < c1``.
    """
    labels = list(tree)
    if not labels:
        raise UserError("the class tree is empty; give one superclass index per fine class")
    parsed: list[int] = []
    for entry in labels:
        try:
            value = float(entry)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(entry, (bool, str)) or not math.isfinite(value) or value != int(value) or value < 0:
            raise UserError(f"class tree entries must be integers >= 0, got {entry!r}")
        parsed.append(int(value))
    labels = parsed
    if int(dim) != dim or dim < 1:
        raise UserError(f"feature dim must be an integer >= 1, got {dim!r}")
    for name, value in (("c1", c1), ("c2", c2)):
        if not value > 0 or not math.isfinite(value):
            raise UserError(f"{name} must be a finite number > 0, got {value!r}")
    if not c2 < c1:
        raise UserError(f"hierarchical centers need c2 < c1 (C^2 << C^1), got c1={c1!r}, c2={c2!r}")
    num_super = max(labels) + 1
    members: list[list[int]] = [[] for _ in range(num_super)]
    for fine, sup in enumerate(labels):
        members[sup].append(fine)
    empty = [s for s, m in enumerate(members) if not m]
    if empty:
        raise UserError(f"superclass(es) {empty} of the class tree have no fine class; "
                        f"superclasses must be numbered 0..{num_super - 1} without gaps")
    top = _unit_mm_centers(num_super, dim) * float(c1)
    out = torch.empty(len(labels), dim, dtype=torch.float64)
    local: dict[int, Tensor] = {}
    for sup, fines in enumerate(members):
        k = len(fines)
        if k not in local:
            local[k] = _unit_mm_centers(k, dim) * float(c2)
        for j, fine in enumerate(fines):
            out[fine] = top[sup] + local[k][j]
    return out
