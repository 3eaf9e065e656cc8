"""Effectiveness of the gradient attacks, corruptions and transfer attacks on trained MNIST models.

Session fixtures (tests/conftest.py): LeNet-5 + SCE, LeNet-5 + MMC-10 and a
3-layer CNN + SCE substitute, each trained 2 epochs on 6,000 images; the first
200 test images.  Besides "the attack works", the checks are the
gradient-masking criteria of the PC paper ("Identifying gradient masking"):
iterative attacks beat one-step FGSM, and transfer attacks from a substitute
are weaker than white-box ones.  Thresholds leave room for the variation of
the fixtures between machines (CPU kernels and thread counts train slightly
different weights): the comments give the values measured on these 200 points
with the conftest fixtures on an AVX2 machine (native avx2 kernels and
``ATEN_CPU_CAPABILITY=default``) and, as a stand-in for the larger changes other
CPUs cause, with fixtures retrained with "train seeds" 1 and 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from robustloss.attacks import ATTACKS, MultiTargetPGD, TransferAttack
from robustloss.classifier import eval_mode
from robustloss.evaluation import transfer_matrix
from robustloss.classifier import Classifier
from robustloss.models import LeNet5
from robustloss.objectives import MMC

N = 200


@dataclass
class Setup:
    sce: Classifier
    mmc: Classifier
    substitute: Classifier
    x: Tensor
    y: Tensor


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """The trained fixtures, with torch single-threaded (much faster on a shared 2-core machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = request.getfixturevalue("mnist_test")
        yield Setup(request.getfixturevalue("sce_model"), request.getfixturevalue("mmc_model"),
                    request.getfixturevalue("substitute_model"), x[:N], y[:N])
    finally:
        torch.set_num_threads(old)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with eval_mode(model), torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def attacked(model: nn.Module, s: Setup, name: str, **params: Any) -> float:
    """Accuracy of ``model`` on the examples crafted by attack ``name`` against it."""
    x_adv = ATTACKS.build(name, params, model=model)(s.x, s.y)
    return accuracy(model, x_adv, s.y)


# ------------------------------------------------------------------ white-box attacks on SCE
WHITE_BOX = [  # eps = 0.3, 10 steps; measured, largest over avx2 / default / train seeds 1, 2 (clean 0.97-0.99):
    ("bim", {"steps": 10}),  # BIM 0.065, PGD 0.0, MIM 0.075, APGD 0.0, APGD-DLR 0.03, multi-target 0.005
    ("pgd", {"steps": 10, "step_size": 0.075}),
    ("mim", {"steps": 10}),
    ("apgd", {"steps": 10}),
    ("apgd", {"steps": 10, "loss": "dlr"}),
    ("multitarget", {"steps": 10, "step_size": 0.075}),
]


def test_sce_fixture_is_accurate(setup: Setup) -> None:
    assert accuracy(setup.sce, setup.x, setup.y) >= 0.8


@pytest.mark.parametrize("name, params", WHITE_BOX, ids=lambda v: v if isinstance(v, str) else ",".join(
    f"{k}={x}" for k, x in v.items()))
def test_iterative_white_box_attacks_break_sce(setup: Setup, name: str, params: dict[str, Any]) -> None:
    assert attacked(setup.sce, setup, name, eps=0.3, **params) <= 0.15


def test_fgsm_hurts_sce(setup: Setup) -> None:
    clean = accuracy(setup.sce, setup.x, setup.y)
    # measured 0.29 x clean (avx2), 0.20 x (default); train seeds 1, 2: 0.25 x, 0.05 x
    assert attacked(setup.sce, setup, "fgsm", eps=0.3) <= 0.4 * clean


def test_l2_attacks_hurt_sce(setup: Setup) -> None:
    """L2, eps 3.0, 10 steps: measured PGD 0.04, APGD 0.02 / 0.04, FGSM 0.44 / 0.45 (avx2 / default; clean 0.99)."""
    pgd = attacked(setup.sce, setup, "pgd", eps=3.0, norm="l2", steps=10, step_size=0.75)
    apgd = attacked(setup.sce, setup, "apgd", eps=3.0, norm="l2", steps=10)
    fgsm = attacked(setup.sce, setup, "fgsm", eps=3.0, norm="l2")
    assert pgd <= 0.2 and apgd <= 0.2 and fgsm <= 0.75
    assert max(pgd, apgd) < fgsm - 0.1


def test_iterative_attacks_beat_fgsm(setup: Setup) -> None:
    """The PC paper gradient-masking criterion (1); at eps = 0.2 measured FGSM 0.52 / 0.5, BIM 0.335 / 0.32,
    PGD 0.265 / 0.235, MIM 0.35 / 0.345 (avx2 / default; train seeds 1, 2: gaps to FGSM >= 0.14)."""
    fgsm = attacked(setup.sce, setup, "fgsm", eps=0.2)
    assert attacked(setup.sce, setup, "bim", eps=0.2, steps=10) < fgsm - 0.08
    assert attacked(setup.sce, setup, "pgd", eps=0.2, steps=10, step_size=0.05) < fgsm - 0.08
    assert attacked(setup.sce, setup, "mim", eps=0.2, steps=10) < fgsm - 0.08


@pytest.mark.parametrize("eps", [0.15, 0.2])
def test_apgd_ce_at_least_as_strong_as_pgd(setup: Setup, eps: float) -> None:
    """Same 20 steps; APGD minus PGD measured: eps 0.15: -0.015 (avx2), 0.0 (default); eps 0.2: -0.02, -0.035;
    train seeds 1, 2: -0.02 to -0.005."""
    pgd = attacked(setup.sce, setup, "pgd", eps=eps, steps=20, step_size=eps / 4)
    apgd = attacked(setup.sce, setup, "apgd", eps=eps, steps=20, loss="ce")
    assert apgd <= pgd + 0.02


def test_multitarget_at_least_as_strong_as_one_targeted_pgd(setup: Setup) -> None:
    """eps 0.15, 10 steps (multi-target minus targeted PGD with random targets measured -0.295 (avx2), -0.32
    (default), -0.37 and -0.405 (train seeds 1, 2))."""
    common = {"eps": 0.15, "steps": 10, "step_size": 0.0375}
    targeted = attacked(setup.sce, setup, "pgd", targeted=True, **common)
    assert attacked(setup.sce, setup, "multitarget", k=3, **common) <= targeted


# ------------------------------------------------------------------ multi-target: choice of targets
def test_multitarget_targets_are_top_logits_for_softmax_models(setup: Setup) -> None:
    attack = MultiTargetPGD(setup.sce, eps=0.1, k=3)
    chosen = attack.choose_targets(setup.x[:20], setup.y[:20])
    with torch.no_grad():
        logits = setup.sce(setup.x[:20]).scatter(1, setup.y[:20, None], float("-inf"))
    assert torch.equal(chosen, logits.topk(3, dim=1).indices)


def test_multitarget_targets_are_nearest_centers_ties_by_logits() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(6, 1, 16, 16), torch.arange(6) % 4
    # MM centers are equidistant: every tie is broken by the clean logits
    mmc = Classifier(LeNet5(1, 16, 8), MMC(4, 8))
    chosen = MultiTargetPGD(mmc, 0.1, k=2).choose_targets(x, y)
    with torch.no_grad():
        logits = mmc(x).scatter(1, y[:, None], float("-inf"))
    assert torch.equal(chosen, logits.topk(2, dim=1).indices)
    # centers on a line 0 - 1 - 2 - 3: the nearest other centers come first, whatever the logits
    centers = torch.zeros(4, 8)
    centers[:, 0] = torch.tensor([0.0, 1.0, 2.5, 4.5])
    line = Classifier(LeNet5(1, 16, 8), MMC(4, 8, centers=centers))
    chosen = MultiTargetPGD(line, 0.1, k=3).choose_targets(x, y)
    expected = {0: [1, 2, 3], 1: [0, 2, 3], 2: [1, 3, 0], 3: [2, 1, 0]}
    assert chosen.tolist() == [expected[int(label)] for label in y]
    # k larger than the number of other classes: all of them
    assert MultiTargetPGD(line, 0.1, k=10).choose_targets(x, y).shape == (6, 3)


# ------------------------------------------------------------------ corruptions (the MMC paper Sec. 4.5)
@pytest.mark.parametrize("name,option,small_value,large_value", [
    # measured: clean 0.99; sigma 0.05 -> 0.99, 0.3 -> 0.975, 0.5 -> 0.865, 1.0 -> 0.475
    ("gaussian-noise", "sigma", 0.05, 1.0),
    # measured: clean 0.99; +-10 deg -> 0.99, +-30 -> 0.935, +-60 -> 0.73, +-90 -> 0.585
    ("rotation", "degrees", 10.0, 90.0),
])
def test_corruption_small_is_harmless_large_hurts(setup: Setup, name: str, option: str, small_value: float,
                                                  large_value: float) -> None:
    clean = accuracy(setup.sce, setup.x, setup.y)
    small = attacked(setup.sce, setup, name, **{option: small_value})
    large = attacked(setup.sce, setup, name, **{option: large_value})
    assert small >= clean - 0.03
    assert large <= clean - 0.2 and large < small


# ------------------------------------------------------------------ transfer (the MMC paper Sec. 4.4, Fig. 4)
@pytest.mark.parametrize("attack", ["pgd", "mim"])
def test_transfer_from_substitute_weaker_than_white_box(setup: Setup, attack: str) -> None:
    """The PC paper criterion (2).  eps 0.3, 10 steps; transfer minus white-box accuracy measured: PGD 0.555
    (avx2), 0.525 (ATEN_CPU_CAPABILITY=default), MIM 0.515, 0.53; with fixtures of train seeds 1, 2: PGD
    0.38-0.39, 0.155, MIM 0.405, 0.23."""
    params: dict[str, Any] = {"eps": 0.3, "steps": 10}
    if attack == "pgd":
        params["step_size"] = 0.075
    white = attacked(setup.sce, setup, attack, **params)
    transfer = TransferAttack(setup.sce, setup.substitute, attack, **params)
    transferred = accuracy(setup.sce, transfer(setup.x, setup.y), setup.y)
    assert transferred >= white + 0.1
    assert transferred <= accuracy(setup.sce, setup.x, setup.y) - 0.2   # it does transfer (measured >= 0.385)


def test_transfer_uses_the_whole_trajectory(setup: Setup) -> None:
    """Stopping at the first iterate that fools the substitute transfers badly (at eps 0.3, final minus first
    iterate measured -0.33 (avx2), -0.405 (default); train seeds 1, 2: -0.485, -0.54)."""
    params = {"eps": 0.3, "steps": 10, "step_size": 0.075}
    final = TransferAttack(setup.sce, setup.substitute, "pgd", **params)
    first = TransferAttack(setup.sce, setup.substitute, "pgd", final_iterate=False, **params)
    assert accuracy(setup.sce, final(setup.x, setup.y), setup.y) < \
        accuracy(setup.sce, first(setup.x, setup.y), setup.y) - 0.1


def test_transfer_matrix(setup: Setup) -> None:
    """Crafted once per substitute, evaluated on every target; the diagonal is white-box.

    MIM, eps 0.3, 10 steps, 100 points.
    """
    x, y = setup.x[:100], setup.y[:100]
    spec = "mim:eps=0.3,steps=10"
    matrix = transfer_matrix({"cnn3": setup.substitute, "sce": setup.sce}, {"sce": setup.sce, "mmc": setup.mmc},
                             x, y, spec, batch_size=64)
    assert set(matrix) == {("cnn3", "sce"), ("cnn3", "mmc"), ("sce", "sce"), ("sce", "mmc")}
    # the same numbers as one TransferAttack per pair (the diagonal: the white-box attack's final iterate),
    # up to float noise from the other batching (measured: equal on every fixture below)
    for sub_name, sub in (("cnn3", setup.substitute), ("sce", setup.sce)):
        for target_name, target in (("sce", setup.sce), ("mmc", setup.mmc)):
            attack = TransferAttack(target, sub, "mim", eps=0.3, steps=10)
            assert matrix[(sub_name, target_name)] == pytest.approx(accuracy(target, attack(x, y), y), abs=0.03)
    # measured sce->sce 0.1 (avx2), 0.05 (default); train seeds 1, 2: 0.04, 0.0.  The gap to cnn3->sce:
    # 0.51 (avx2), 0.54 (default); train seeds 1, 2: 0.47, 0.26
    assert matrix[("sce", "sce")] <= 0.2
    assert matrix[("sce", "sce")] < matrix[("cnn3", "sce")] - 0.15   # white-box beats transfer


# ------------------------------------------------------------------ adaptive vs CE against MMC
def test_ce_gradient_vanishes_on_mmc_but_adaptive_does_not(setup: Setup) -> None:
    """Softmax CE on MMC logits (-||z - mu_l||^2 / 2, margins ~30-120) saturates in float32.

    Measured: the CE input gradient is exactly 0 at 22% (avx2), 24% (ATEN_CPU_CAPABILITY=default),
    18% (fixture trained with 2 threads), 35.5% / 57% (train seeds 1 / 2) of the clean points, the
    adaptive loss L_MMC(z, y) gradient at none.
    """
    x = setup.x.clone().requires_grad_(True)
    (ce,) = torch.autograd.grad(nn.functional.cross_entropy(setup.mmc(x), setup.y, reduction="sum"), x)
    (adaptive,) = torch.autograd.grad(setup.mmc.objective.attack_loss(setup.mmc.features(x), setup.y).sum(), x)
    assert float((ce.flatten(1).abs().amax(dim=1) == 0).float().mean()) >= 0.1
    assert bool((adaptive.flatten(1).abs().amax(dim=1) > 0).all())


def test_adaptive_loss_beats_ce_against_mmc_untargeted(setup: Setup) -> None:
    """Untargeted PGD, eps 0.3, 40 steps of 0.01 (the PC paper's PGD; the MMC paper's MNIST setting, Fig. 3(b), has 50).

    The adaptive loss ``L_MMC(z, y)`` (the MMC paper App. B.4) beats softmax CE on the
    MMC logits where CE's gradient is exactly zero (saturated softmax, see the test
    above).  Without a random start this is categorical: PGD-CE cannot move from
    such a point at all (every step is 0), the adaptive loss moves every point and
    fools some of them - measured 9 of 44 saturated points (avx2), 7 of 48
    (ATEN_CPU_CAPABILITY=default), 9 of 36 (fixture trained with 2 threads),
    9 of 77 / 17 of 71 (train seed 1, default / avx2); PGD-CE fools none.

    With random starts (seeds 0 and 1) the gain is small and NOT strict on every
    fixture: robust points summed over both seeds, adaptive vs CE, measured 10 vs 15
    (avx2), 15 vs 29 (default), 14 vs 14 (2 threads), 26 vs 38 / 44 vs 57 (train
    seed 1), 92 vs 117 (train seed 2).  It does not hold with 10 steps either (eps
    0.3: adaptive 0.47 vs CE 0.43, 500 points), nor reliably at eps 0.2, nor in
    targeted mode (eps 0.3: adaptive 0.095, 0.105 vs CE 0.09, 0.105 on an older fixture).
    """
    x = setup.x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(setup.mmc(x), setup.y, reduction="sum"), x)
    saturated = grad.flatten(1).abs().amax(dim=1) == 0
    assert int(saturated.sum()) >= 20                                   # measured 36-77 of 200
    fooled = {}
    for loss in ("adaptive", "ce"):
        attack = ATTACKS.build("pgd", {"eps": 0.3, "steps": 40, "step_size": 0.01, "loss": loss,
                                       "random_start": False}, model=setup.mmc)
        with torch.no_grad():
            fooled[loss] = setup.mmc(attack(setup.x, setup.y)).argmax(dim=1) != setup.y
    assert int(fooled["ce"][saturated].sum()) == 0
    assert int(fooled["adaptive"][saturated].sum()) >= 4                # measured 7-17

    robust = {"adaptive": torch.zeros(N), "ce": torch.zeros(N)}
    for loss in robust:
        for seed in (0, 1):
            attack = ATTACKS.build("pgd", {"eps": 0.3, "steps": 40, "step_size": 0.01, "loss": loss, "seed": seed},
                                   model=setup.mmc)
            with torch.no_grad():
                robust[loss] += (setup.mmc(attack(setup.x, setup.y)).argmax(dim=1) == setup.y).float()
    assert robust["adaptive"].sum() <= robust["ce"].sum()


def test_adaptive_margin_loss_much_stronger_than_ce_against_mmc(setup: Setup) -> None:
    """The form-2 adaptive loss (C&W margin on -L_MMC), untargeted (eps 0.3, 40 steps): measured 0.0 on every
    fixture vs CE 0.035 (avx2), 0.075 (default), 0.085 / 0.28 (train seeds 1 / 2).

    Not in targeted mode (eps 0.3: margin 0.12 vs CE 0.09).
    """
    common = {"eps": 0.3, "steps": 40, "step_size": 0.01}
    margin = attacked(setup.mmc, setup, "pgd", loss="adaptive-margin", **common)
    ce = attacked(setup.mmc, setup, "pgd", loss="ce", **common)
    assert margin <= 0.5 * ce and margin <= 0.03
