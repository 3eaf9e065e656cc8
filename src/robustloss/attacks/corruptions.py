"""General-purpose "attacks" (the MMC paper, Sec. 4.5): Gaussian noise and random rotation.

They use neither gradients nor the loss - they test robustness to simple input
corruptions that were not part of training (Carlini et al. 2019).  Their
randomness comes from the attack's seeded generator, so a fixed ``seed`` gives
the same corrupted images.  The result is clamped to the input bounds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustloss.attacks.base import Attack
from robustloss.errors import UserError, check_range


class _Corruption(Attack):
    """An untargeted, loss-free random transformation of the inputs (distortion measured in L2)."""

    default_loss = "ce"   # unused: corruptions never evaluate a loss
    norm = "l2"

    def __init__(self, model: nn.Module, *, bounds: tuple[float, float], seed: int) -> None:
        super().__init__(model, loss=None, targeted=False, bounds=bounds, seed=seed)
        self.loss_name = "none"

    def params(self) -> dict[str, Any]:
        return {"seed": self.seed}


class GaussianNoise(_Corruption):
    """Additive Gaussian noise: ``x_adv = clip_[lo,hi](x + sigma * n)``, ``n ~ N(0, I)``.

    Gilmer et al. 2019 / Fawzi et al. 2016; the MMC paper, Sec. 4.5 (Table 2,
    Part III).  Default ``sigma = 0.05``, the standard deviation of the MMC
    paper's Table 2.
    """

    name = "gaussian-noise"

    def __init__(self, model: nn.Module, sigma: float = 0.05, *, bounds: tuple[float, float] = (0.0, 1.0),
                 seed: int = 0) -> None:
        super().__init__(model, bounds=bounds, seed=seed)
        self.sigma = check_range("sigma", sigma, low=0.0)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "sigma": self.sigma}

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        if self.sigma == 0:
            return x
        gens = self.row_generators()
        noise = (torch.randn(x.shape, generator=self.generator) if gens is None else
                 torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens])).to(device=x.device, dtype=x.dtype)
        return self.clamp(x + self.sigma * noise)


class Rotation(_Corruption):
    """Random rotation by an angle drawn uniformly from ``[-degrees, +degrees]`` per image.

    Engstrom et al. 2019; the MMC paper, Sec. 4.5 (Table 2, Part III).  Rotation about
    the image center with bilinear interpolation (one batched
    ``affine_grid`` / ``grid_sample``); pixels rotated in from outside the image
    are filled with the lower bound (black).  Default ``degrees = 30``, the
    +-30 degree range of the MMC paper's Table 2.  Needs images ``(N, C, H, W)``.
    """

    name = "rotation"

    def __init__(self, model: nn.Module, degrees: float = 30.0, *, bounds: tuple[float, float] = (0.0, 1.0),
                 seed: int = 0) -> None:
        super().__init__(model, bounds=bounds, seed=seed)
        self.degrees = check_range("degrees", degrees, low=0.0, high=180.0)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "degrees": self.degrees}

    def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
        if x.dim() != 4:
            raise UserError(f"rotation needs images of shape (N, C, H, W), got {tuple(x.shape)}")
        if self.degrees == 0 or x.shape[0] == 0:
            return x
        gens = self.row_generators()
        uniform = (torch.rand(x.shape[0], generator=self.generator, dtype=torch.float64) if gens is None else
                   torch.tensor([float(torch.rand((), generator=g, dtype=torch.float64)) for g in gens],
                                dtype=torch.float64))
        angles = (uniform * 2 - 1) \
            * math.radians(self.degrees)
        return self.clamp(rotate(x, angles, fill=self.bounds[0]))


def rotate(x: Tensor, angles: Tensor, fill: float = 0.0) -> Tensor:
    """Rotate every image of ``x`` (N, C, H, W) about its center by ``angles`` (N,) radians.

    Bilinear interpolation; pixels coming from outside the image get ``fill``.
    """
    n, _, h, w = x.shape
    angles = angles.to(torch.float64)
    cos, sin = angles.cos(), angles.sin()
    zero = torch.zeros_like(cos)
    # the rotation in pixel units, written in affine_grid's normalised [-1, 1] coordinates
    theta = torch.stack([torch.stack([cos, -sin * h / w, zero], dim=1),
                         torch.stack([sin * w / h, cos, zero], dim=1)], dim=1)
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
