"""PGD (issue 2): adaptive loss chosen automatically, restarts, targets, user loss, invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustloss import Classifier, UserError
from robustloss.attacks import PGD, ModelOutput


def _acc(model: torch.nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_default_loss_is_the_objectives_adaptive_loss(mmc_model: Classifier,
                                                      mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:64], mnist_test[1][:64]
    objective = mmc_model.objective

    def explicit(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
        assert out.features is not None
        mu = objective.centers
        if targets is None:
            return 0.5 * (out.features - mu[labels]).pow(2).sum(1)      # L_MMC(z, y)
        return -0.5 * (out.features - mu[targets]).pow(2).sum(1)        # -L_MMC(z, y_t)

    for targeted in (False, True):
        auto = PGD(mmc_model, 0.2, 5, 0.05, targeted=targeted, seed=1)(x, y)
        manual = PGD(mmc_model, 0.2, 5, 0.05, targeted=targeted, seed=1, loss=explicit)(x, y)
        assert torch.equal(auto, manual)
    ce = PGD(mmc_model, 0.2, 5, 0.05, seed=1, loss="ce")(x, y)
    assert not torch.equal(ce, PGD(mmc_model, 0.2, 5, 0.05, seed=1)(x, y))


def test_sce_default_is_cross_entropy(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:64], mnist_test[1][:64]

    def ce(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
        return F.cross_entropy(out.logits, labels, reduction="none")

    assert torch.equal(PGD(sce_model, 0.1, 5, 0.02, seed=3)(x, y), PGD(sce_model, 0.1, 5, 0.02, seed=3, loss=ce)(x, y))


def test_pgd_drives_sce_accuracy_down_and_more_steps_help(sce_model: Classifier,
                                                          mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    clean = _acc(sce_model, x, y)
    acc10 = _acc(sce_model, PGD(sce_model, 0.2, 10, 0.01)(x, y), y)
    acc40 = _acc(sce_model, PGD(sce_model, 0.2, 40, 0.01)(x, y), y)
    assert clean > 0.9
    assert acc40 <= acc10 < clean
    # measured (clean / 10 / 40 steps): 0.985 / 0.67 / 0.235 (avx2), 0.99 / 0.675 / 0.23 (default),
    # 0.99 / 0.665 / 0.215 (fixture trained with 2 threads); train seeds 1, 2: 40 steps 0.135, 0.015
    assert acc40 < 0.4


class GradientRows(nn.Module):
    """Wraps a model; counts the input rows of its forward passes that take an input gradient."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.rows += x.shape[0]
        return self.inner(x)


#: Restarts 1 -> 5 (eps 0.2, 2 steps of 0.05, 200 points) fool this many more points: measured 8 (avx2),
#: 12 (ATEN_CPU_CAPABILITY=default), 11 (fixture trained with 2 threads), 14 / 17 (train seed 1, avx2 / default).
RESTART_GAIN = 3
#: Targeted PGD (eps 0.3, 20 steps of 0.03, 100 points) reaches its targets: measured 0.90 / 0.85 (random /
#: given targets, avx2), 0.93 / 0.93 (default), 0.91 / 0.86 (2 threads), 0.95 / 0.95-0.98 (train seed 1).
TARGETED_HITS = 0.7


def test_restarts_restart_the_survivors_and_only_lower_accuracy(sce_model: Classifier,
                                                                 mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:200], mnist_test[1][:200]
    fooled, rows = {}, {}
    for restarts in (1, 5):
        model = GradientRows(sce_model)
        x_adv = PGD(model, 0.2, 2, 0.05, restarts=restarts, seed=0, loss="ce")(x, y)
        with torch.no_grad():
            fooled[restarts] = sce_model(x_adv).argmax(1) != y
        rows[restarts] = model.rows
    # the first restart is the same run, so every point fooled once stays fooled ...
    assert bool((fooled[5] | ~fooled[1]).all())
    # ... the 4 others take their 2 steps on every point not fooled yet ...
    assert rows[5] >= rows[1] + 4 * 2 * int((~fooled[5]).sum())
    # ... from new random starts, which fool more points
    assert int(fooled[5].sum()) >= int(fooled[1].sum()) + RESTART_GAIN


def test_targeted_random_targets_are_seeded_never_the_label_and_reached(sce_model: Classifier,
                                                                       mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    drawn: list[Tensor] = []

    def targeted_ce(out: ModelOutput, labels: Tensor, targets: Tensor | None) -> Tensor:
        """The targeted CE loss (SCE's adaptive loss), recording the targets the attack asks for."""
        assert targets is not None
        if len(targets) == len(labels) == len(x) and not drawn:
            drawn.append(targets.clone())
        return -F.cross_entropy(out.logits, targets, reduction="none")

    xa = PGD(sce_model, 0.3, 20, 0.03, targeted=True, seed=5, loss=targeted_ce)(x, y)
    (targets,) = drawn
    assert not bool((targets == y).any()), "a random target must never be the true label"
    assert len(set(targets.tolist())) == 10                                 # drawn over the classes
    # the same seed draws the same targets and gives the same result as the default (adaptive) loss
    assert torch.equal(xa, PGD(sce_model, 0.3, 20, 0.03, targeted=True, seed=5)(x, y))
    with torch.no_grad():
        hits = sce_model(xa).argmax(1) == targets
    assert float(hits.float().mean()) >= TARGETED_HITS, "targeted PGD should mostly reach its random targets"
    given = (y + 1) % 10
    xt = PGD(sce_model, 0.3, 20, 0.03, targeted=True)(x, y, given)
    with torch.no_grad():
        reached = sce_model(xt).argmax(1) == given
    assert float(reached.float().mean()) >= TARGETED_HITS, "targeted PGD should mostly reach the given target"


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_invariants(mmc_model: Classifier, mnist_test: tuple[Tensor, Tensor], norm: str) -> None:
    x, y = mnist_test[0][:32], mnist_test[1][:32]
    eps = 0.3 if norm == "linf" else 2.0
    x0, params0 = x.clone(), [p.clone() for p in mmc_model.parameters()]
    grads0 = [None if p.grad is None else p.grad.clone() for p in mmc_model.parameters()]
    mmc_model.train()
    x_adv = PGD(mmc_model, eps, 5, eps / 4, norm=norm)(x, y)
    assert mmc_model.training, "model mode must be restored"
    mmc_model.eval()
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert torch.equal(x, x0)
    assert all(torch.equal(p, q) for p, q in zip(mmc_model.parameters(), params0))
    for p, g in zip(mmc_model.parameters(), grads0):  # parameter gradients untouched
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert torch.equal(PGD(mmc_model, 0.0, 3, 0.1)(x, y), x)


def test_bad_arguments(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:4], mnist_test[1][:4]
    with pytest.raises(UserError, match="eps"):
        PGD(sce_model, -0.1, 10, 0.01)
    with pytest.raises(UserError, match="steps"):
        PGD(sce_model, 0.1, 0, 0.01)
    with pytest.raises(UserError, match="valid choices: l2, linf"):
        PGD(sce_model, 0.1, 10, 0.01, norm="l1")
    with pytest.raises(UserError, match="equals the true label"):
        PGD(sce_model, 0.1, 2, 0.01, targeted=True)(x, y, y)
    with pytest.raises(UserError, match="outside the declared bounds"):
        PGD(sce_model, 0.1, 2, 0.01)(x * 2 + 0.5, y)
    with pytest.raises(ValueError):  # UserError is a ValueError for Python callers
        PGD(sce_model, 0.1, 2, 0.01)(x, y[:2])


@pytest.mark.parametrize("kind", ["at-pgd", "at-fgsm", "eval-restarts"])
def test_craft_returns_runs_examples_with_fewer_forwards(kind: str, mmc_model: Classifier,
                                                         mnist_test: tuple[Tensor, Tensor]) -> None:
    """``craft`` (adversarial training's entry) gives ``run``'s examples exactly, minus the measuring forwards."""
    from robustloss.attacks import FGSM
    x, y = mnist_test[0][:48], mnist_test[1][:48]
    n = x.shape[0]

    def build() -> PGD | FGSM:
        if kind == "at-pgd":     # as TrainingAdversary builds it: targeted, last iterate, one restart
            return PGD(mmc_model, 0.3, 4, 0.05, targeted=True, final_iterate=True)
        if kind == "at-fgsm":
            attack = FGSM(mmc_model, 0.2)
            attack.final_iterate = True
            return attack
        return PGD(mmc_model, 0.1, 3, 0.03, restarts=2)   # evaluation settings: early exit, restarts

    ran, crafted = build(), build()
    result = ran.run(x, y, generator=torch.Generator().manual_seed(5))
    x_adv = crafted.craft(x, y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x_adv, result.adversarial)        # the same operations in the same order
    assert crafted.measure_last_iterate and crafted.example_queries is None   # state restored after the call
    if kind == "eval-restarts":
        assert crafted.queries == ran.queries - n         # only run's measuring forward is saved
    else:
        assert crafted.queries == ran.queries - 2 * n     # and the last iterate's success check
