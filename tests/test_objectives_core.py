"""SCE, MMC and MMLDA: values against hand computations, gradients, attack-loss signs, Classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustloss import Classifier, UserError
from robustloss.models import LeNet5
from robustloss.objectives import MMC, MMLDA, SCE, build_objective, logit_margin


def test_mmc_loss_value_by_hand() -> None:
    centers = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    obj = MMC(2, 2, c_mm=1.0, centers=centers).double()
    z = torch.tensor([[0.5, 1.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    # 1/2 ||z - mu_y||^2: (0.25 + 1) / 2 = 0.625 and 1/2
    assert obj.per_example_loss(z, y).tolist() == pytest.approx([0.625, 0.5])
    assert obj.loss(z, y).item() == pytest.approx(0.5625)
    assert obj.logits(z)[0].tolist() == pytest.approx([-0.625, -(2.25 + 1) / 2])
    authors = MMC(2, 2, c_mm=1.0, centers=centers, half=False).double()
    assert authors.loss(z, y).item() == pytest.approx(2 * 0.5625)


def test_mmc_centers_are_fixed_buffers() -> None:
    obj = MMC(10, 16, c_mm=10.0)
    assert list(obj.parameters()) == []
    assert torch.allclose(obj.centers.norm(dim=1), torch.full((10,), 10.0))


def test_mmlda_matches_eq10_both_forms() -> None:
    obj = MMLDA(10, 9, c_mm=3.0).double()
    z = torch.randn(5, 9, dtype=torch.float64)
    y = torch.randint(0, 10, (5,))
    quad = -0.5 * (z[:, None, :] - obj.centers[None]).pow(2).sum(-1)
    # equal up to the float32 rounding of the stored centers (their norms differ by ~1e-7)
    assert obj.loss(z, y).item() == pytest.approx(F.cross_entropy(quad, y).item(), rel=1e-6)


def test_sce_is_cross_entropy_on_linear_head() -> None:
    obj = SCE(4, 3).double()
    z = torch.randn(6, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    expected = F.cross_entropy(z @ obj.head.weight.T + obj.head.bias, y)
    assert obj.loss(z, y).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("name", ["sce", "mmc", "mmlda"])
def test_gradcheck(name: str) -> None:
    obj = build_objective(name, 5, 4).double()
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 4])
    assert torch.autograd.gradcheck(lambda t: obj.loss(t, y), (z,))
    for form in ("ce", "margin"):
        assert torch.autograd.gradcheck(lambda t: obj.attack_loss(t, y, None, form).sum(), (z,))


def test_mmc_adaptive_losses_follow_appendix_b4() -> None:
    obj = MMC(10, 9, c_mm=10.0).double()
    z = torch.randn(4, 9, dtype=torch.float64)
    y, t = torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8])
    l_mmc = obj.distances(z)
    # attack_loss = -L_Ada: untargeted form 1 = L_MMC(z, y); targeted form 1 = -L_MMC(z, y_t)
    assert torch.allclose(obj.attack_loss(z, y), l_mmc.gather(1, y[:, None]).squeeze(1))
    assert torch.allclose(obj.attack_loss(z, y, t), -l_mmc.gather(1, t[:, None]).squeeze(1))
    # untargeted form 2 = L_MMC(z, y) - L_MMC(z, y~), y~ the closest other center
    others = l_mmc.scatter(1, y[:, None], float("inf")).amin(1)
    assert torch.allclose(obj.attack_loss(z, y, None, "margin"), l_mmc.gather(1, y[:, None]).squeeze(1) - others)


@pytest.mark.parametrize("name", ["sce", "mmc", "mmlda"])
def test_untargeted_ascent_step_increases_true_class_loss(name: str) -> None:
    torch.manual_seed(0)
    obj = build_objective(name, 10, 16).double()
    z = torch.randn(8, 16, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (8,))
    t = (y + 1) % 10
    z.requires_grad_(True)
    (g,) = torch.autograd.grad(obj.attack_loss(z, y).sum(), z)
    (gt,) = torch.autograd.grad(obj.attack_loss(z, y, t).sum(), z)
    z0 = z.detach()
    z_un, z_tar = z0 + 1e-3 * g, z0 + 1e-3 * gt
    true_margin = lambda zz: -logit_margin(obj.logits(zz), y)  # noqa: E731 - true logit minus best other
    assert (true_margin(z_un) < true_margin(z0)).all()
    tgt_logit = lambda zz: F.log_softmax(obj.logits(zz), 1).gather(1, t[:, None]).squeeze(1)  # noqa: E731
    assert (tgt_logit(z_tar) > tgt_logit(z0)).all()


def test_classifier_is_plain_module_returning_logits() -> None:
    model = Classifier(LeNet5(1, 28, 84), MMC(10, 84))
    x = torch.rand(3, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (3, 10)
    assert torch.allclose(logits, model.objective.logits(model.features(x)))
    assert model.features(x).shape == (3, 84)


def test_unknown_objective_and_option() -> None:
    with pytest.raises(UserError, match="valid choices: .*mmc"):
        build_objective("nope", 10, 4)
    with pytest.raises(UserError, match="valid options: c_mm, half"):
        build_objective("mmc", 10, 4, {"cmm": "1"})
    with pytest.raises(UserError):
        build_objective("mmc", 10, 4, {"c_mm": "0"})


def test_module_half_still_works_on_mmc() -> None:
    """MMC's ``half`` option must not shadow ``nn.Module.half()`` (dtype conversion)."""
    obj = MMC(10, 9, half=False)
    converted = obj.half()
    assert converted is obj and obj.centers.dtype == torch.float16
    assert obj.scale == 1.0
