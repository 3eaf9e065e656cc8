"""The per-row Adam of C&W and SPSA (robustloss.attacks.adam) against torch.optim.Adam."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from robustloss.attacks.adam import Adam


def quadratic_grad(theta: Tensor, scale: Tensor, centre: Tensor) -> Tensor:
    """Gradient of sum(scale * (theta - centre)^2) per row: a toy problem with a different curvature per entry."""
    return 2 * scale * (theta - centre)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_adam_per_row_with_rows_leaving(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    n, steps, lr = 6, 60, 0.05
    scale = (torch.rand(n, 3, 4, generator=gen) * 10 + 0.1).to(dtype)
    centre = torch.randn(n, 3, 4, generator=gen).to(dtype)
    start = torch.randn(n, 3, 4, generator=gen).to(dtype)
    leave_after = [steps, 1, 7, 20, 33, steps]          # row i is updated in steps 1..leave_after[i]

    # reference: one parameter per row in one torch.optim.Adam; a row whose .grad is None is skipped
    params = [torch.nn.Parameter(start[i].clone()) for i in range(n)]
    ref = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    theta = start.clone()
    ours = Adam(theta, lr)
    for t in range(1, steps + 1):
        active = [i for i in range(n) if t <= leave_after[i]]
        for i, p in enumerate(params):
            p.grad = quadratic_grad(p.detach(), scale[i], centre[i]) if i in active else None
        ref.step()
        theta[active] = theta[active] - ours.step(active, quadratic_grad(theta[active], scale[active],
                                                                         centre[active]))
    expected = torch.stack([p.detach() for p in params])
    # measured max abs difference: 4.8e-7 (float32) / 3.3e-16 (float64) on AVX2; the margin covers other kernels
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(theta, expected, atol=tol, rtol=0)
    # the toy problem is being solved: the rows that ran every step approach their minimum
    assert float((theta[0] - centre[0]).abs().max()) < 0.5 * float((start[0] - centre[0]).abs().max())


def test_first_step_is_lr_times_sign_and_other_rows_untouched() -> None:
    # Algorithm 1 at t = 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps)
    like = torch.zeros(3, 5)
    adam = Adam(like, lr=0.1)
    grad = torch.tensor([[3.0, -2.0, 0.5, -1e-3, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    update = adam.step(torch.tensor([0, 2]), grad)
    torch.testing.assert_close(update, 0.1 * grad / (grad.abs() + 1e-8), atol=1e-9, rtol=1e-6)
    assert float(update[0, 4]) == 0.0
    # row 1 took no step: its moments are still zero
    assert bool((adam.m[1] == 0).all()) and bool((adam.v[1] == 0).all())
    torch.testing.assert_close(adam.m[0], 0.1 * grad[0])
    torch.testing.assert_close(adam.v[0], 0.001 * grad[0] ** 2)


def test_update_is_scale_invariant_per_row() -> None:
    # Adam's step does not depend on the gradient's scale (up to eps): rows with gradients 1x and 1000x move alike
    adam = Adam(torch.zeros(2, 4), lr=0.01)
    g = torch.tensor([0.3, -1.0, 2.0, -0.1])
    for _ in range(5):
        update = adam.step([0, 1], torch.stack([g, 1000 * g]))
    torch.testing.assert_close(update[0], update[1], atol=1e-6, rtol=1e-5)
