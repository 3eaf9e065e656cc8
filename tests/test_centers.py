"""Max-Mahalanobis centers: Algorithm 1 against the authors' files, the low-dim fallback, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robustloss import UserError, mm_centers
from robustloss.centers import random_centers

from conftest import shared_file

#: the MMC paper's authors' center files, under <repo root>/../shared
REF = "reference/mm_centers/P2333_Max-Mahalanobis-Training/kernel_paras"


@pytest.mark.parametrize("classes,dim", [(10, 256), (100, 256), (10, 64)])
@pytest.mark.parametrize("c_mm", [1.0, 10.0, 100.0])
def test_matches_authors_files(classes: int, dim: int, c_mm: float) -> None:
    path = shared_file(f"{REF}/meanvar1_featuredim{dim}_class{classes}.npy")
    ref = torch.from_numpy(np.load(path)) * c_mm
    ours = mm_centers(classes, dim, c_mm)
    assert ours.dtype == torch.float64
    assert torch.allclose(ours, ref, atol=1e-6 * c_mm, rtol=0)


@pytest.mark.parametrize("classes,dim", [(2, 1), (3, 2), (4, 3), (10, 9), (10, 84), (20, 256)])
def test_simplex_geometry(classes: int, dim: int) -> None:
    c = mm_centers(classes, dim, 10.0)
    gram = c @ c.T
    assert torch.allclose(gram.diagonal(), torch.full((classes,), 100.0, dtype=torch.float64), atol=1e-9)
    off = gram[~torch.eye(classes, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -100.0 / (classes - 1)), atol=1e-9)


def test_low_dimension_uses_optimised_spread() -> None:
    c = mm_centers(10, 2, 1.0)
    assert torch.allclose(c.norm(dim=1), torch.ones(10, dtype=torch.float64), atol=1e-9)
    gram = c @ c.T
    worst = gram[~torch.eye(10, dtype=torch.bool)].max().item()
    # optimum in 2-D: ten equally spaced points, largest cosine cos(36 deg)
    assert worst == pytest.approx(math.cos(2 * math.pi / 10), abs=2e-3)
    assert torch.equal(c, mm_centers(10, 2, 1.0)), "must be deterministic"


def test_random_centers_norm_and_seed() -> None:
    a, b = random_centers(10, 32, 10.0, seed=1), random_centers(10, 32, 10.0, seed=1)
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.full((10,), 10.0, dtype=torch.float64))
    assert not torch.equal(a, random_centers(10, 32, 10.0, seed=2))


@pytest.mark.parametrize("args", [(1, 10, 1.0), (10, 0, 1.0), (10, 9, 0.0), (10, 9, -1.0), (10, 9, float("nan"))])
def test_invalid_arguments(args: tuple[int, int, float]) -> None:
    with pytest.raises(UserError):
        mm_centers(*args)
