"""C&W-L2, SPSA, DeepFool and SimBA on the trained MNIST fixtures (issue 4, part 2).

Reduced budgets keep the file fast (at most 50 points, C&W with 3 search steps x
100 iterations); the attacks' defaults (the MMC, I-SCE and PC papers' settings) are
checked separately.

Thresholds carry the values measured on the conftest fixtures (an AVX2 machine: its
native avx2 kernels and ``ATEN_CPU_CAPABILITY=default``, which train slightly
different fixtures) and, as a stand-in for the larger changes other CPUs cause
(AVX-512), on fixtures retrained with "train seeds" 1 and 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from robustloss.attacks import ATTACKS, CarliniWagnerL2, DeepFool, SimBA, SPSA
from robustloss.attacks.base import random_targets
from robustloss.classifier import Classifier
from robustloss.errors import UserError

from conftest import hits

#: a reduced C&W budget for tests (defaults: 9 x 1000 iterations, lr 0.005, c0 0.01)
CW_FAST = {"steps": 100, "search_steps": 3, "initial_const": 10.0, "lr": 0.05}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(sce_model: Classifier, mmc_model: Classifier) -> Iterator[None]:
    """Small LeNet batches run faster single-threaded on the shared 2-core machine (fixtures trained first)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def correct_points(model: nn.Module, data: tuple[Tensor, Tensor], n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` test points ``model`` classifies correctly."""
    x, y = data[0][:200], data[1][:200]
    keep = predict(model, x) == y
    return x[keep][:n], y[keep][:n]


def l2(v: Tensor) -> Tensor:
    return v.flatten(1).norm(dim=1)


class Recording(nn.Module):
    """Wraps a model; records every forward: its batch size, its rows and whether autograd was on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.sizes: list[int] = []
        self.grad_enabled: list[bool] = []
        self.rows: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        self.grad_enabled.append(torch.is_grad_enabled() or x.requires_grad)
        self.rows.append(x.detach().clone())
        return self.inner(x)


# ---------------------------------------------------------------------------------------------- C&W
def test_cw_defaults_follow_the_papers() -> None:
    d = ATTACKS.defaults("cw")
    assert (d["steps"], d["search_steps"], d["initial_const"], d["lr"], d["confidence"]) == (1000, 9, 0.01, 0.005, 0.0)
    assert CarliniWagnerL2.minimum_norm and CarliniWagnerL2.default_loss == "adaptive-margin"


def test_cw_untargeted_finds_small_exact_distortions(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 50)
    attack = CarliniWagnerL2(sce_model, **CW_FAST)
    result = attack.run(x, y)
    x_adv, d, ok = result.adversarial, result.distortion, result.success
    assert d.shape == (len(x),)
    assert float(ok.float().mean()) >= 0.95
    # measured 1.64 (avx2) / 1.78 (ATEN_CPU_CAPABILITY=default); train seeds 1, 2: 1.67-1.70, 1.66
    assert float(d[ok].mean()) < 2.5                               # (MNIST pixels in [0, 1]; margin >= 0.7)
    hit, tie = hits(sce_model, x_adv, y)                           # C&W returns points right at the boundary
    assert bool((hit | tie)[ok].all())
    # the reported distortion is exactly that of the returned point; failures are returned unchanged
    assert torch.allclose(d, l2(x_adv - x), atol=1e-5)
    assert torch.equal(x_adv[~ok], x[~ok]) and bool((d[~ok] == 0).all())
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_cw_already_misclassified_input_has_zero_distortion(sce_model: Classifier,
                                                            mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 2)
    wrong = (y + 1) % 10                                           # a label the model does not predict
    result = CarliniWagnerL2(sce_model, steps=5, search_steps=1).run(x, wrong)
    assert torch.equal(result.adversarial, x) and torch.equal(result.distortion, torch.zeros(2))
    assert bool(result.success.all())


def test_cw_higher_confidence_needs_larger_distortion(sce_model: Classifier,
                                                      mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 20)
    high = CarliniWagnerL2(sce_model, confidence=5.0, **CW_FAST)
    low_r = CarliniWagnerL2(sce_model, **CW_FAST).run(x, y)
    high_r = high.run(x, y)
    x_high = high_r.adversarial
    both = low_r.success & high_r.success
    assert int(both.sum()) >= 18
    # measured 1.70x (avx2), 1.60x (default); train seeds 1, 2: 1.67x, 1.43x
    assert float(high_r.distortion[both].mean()) > 1.3 * float(low_r.distortion[both].mean())
    # the high-confidence points really have margin >= kappa
    margin = high.loss_fn(high.forward(x_high), y, None)
    assert bool((margin[both] >= 5.0 - 1e-4).all())


def test_cw_targeted_hits_the_target(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 30)
    targets = random_targets(y, 10, torch.Generator().manual_seed(1))
    result = CarliniWagnerL2(sce_model, targeted=True, **CW_FAST).run(x, y, targets)
    x_adv, ok = result.adversarial, result.success
    assert float(ok.float().mean()) >= 0.8   # measured 1.0 (avx2, default); train seeds 1, 2: 0.9-0.93, 0.97
    hit, tie = hits(sce_model, x_adv, y, targets)
    assert bool((hit | tie)[ok].all())
    assert torch.allclose(result.distortion, l2(x_adv - x), atol=1e-5)
    # a target is harder to reach than any wrong class
    untargeted = CarliniWagnerL2(sce_model, **CW_FAST).run(x, y)
    both = ok & untargeted.success
    assert float(result.distortion[both].mean()) > float(untargeted.distortion[both].mean())


def test_cw_mmc_adaptive_margin_equals_logit_margin(mmc_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    """For MMC the prediction logits are ``-L_MMC(z, l)``, so the adaptive margin (the MMC paper's
    ``-L_Ada^{un,2}``) and the C&W margin on the logits are the same function: same result."""
    x, y = correct_points(mmc_model, mnist_test, 20)
    adaptive = CarliniWagnerL2(mmc_model, **CW_FAST).run(x, y)
    plain = CarliniWagnerL2(mmc_model, loss="margin", **CW_FAST).run(x, y)
    x_a, x_p = adaptive.adversarial, plain.adversarial
    assert torch.equal(x_a, x_p) and torch.equal(adaptive.success, plain.success)
    ok = adaptive.success
    assert float(ok.float().mean()) >= 0.9
    hit, tie = hits(mmc_model, x_a, y)
    assert bool((hit | tie)[ok].all())


@pytest.mark.parametrize("bad", [{"steps": 0}, {"search_steps": 0}, {"initial_const": 0.0}, {"lr": -1.0},
                                 {"confidence": -1.0}, {"loss": "ce"}, {"loss": "adaptive"}, {"loss": "nope"},
                                 {"steps": 2.5}])
def test_cw_bad_options_rejected(sce_model: Classifier, bad: dict) -> None:
    with pytest.raises(UserError):
        ATTACKS.build("cw", bad, model=sce_model)


# --------------------------------------------------------------------------------------------- SPSA
def test_spsa_defaults_follow_the_papers() -> None:
    d = ATTACKS.defaults("spsa")
    assert (d["samples"], d["lr"], d["delta"], d["steps"]) == (128, 0.01, 0.01, 10)


def test_spsa_drives_accuracy_down(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    clean = float((predict(sce_model, x) == y).float().mean())
    x_adv = SPSA(sce_model, 0.3, steps=10, samples=64, lr=0.1)(x, y)
    acc = float((predict(sce_model, x_adv) == y).float().mean())
    assert acc <= clean - 0.4        # measured drop 0.64 (avx2), 0.62 (default); train seeds 1, 2: 0.64, 0.90
    assert float((x_adv - x).abs().max()) <= 0.3 + 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1


def test_spsa_targeted_reaches_targets(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 30)
    targets = random_targets(y, 10, torch.Generator().manual_seed(2))
    x_adv = SPSA(sce_model, 0.3, steps=20, samples=64, lr=0.1, targeted=True)(x, y, targets)
    reached = predict(sce_model, x_adv) == targets
    assert float(reached.float().mean()) >= 0.2   # measured 0.37 (avx2, default); train seeds 1, 2: 0.47, 0.6


class RowByRow(nn.Module):
    """Evaluates its model one row at a time, each row copied to fresh memory.

    A row's output then does not depend on the batch it came in: CPU kernels round
    differently for different batch sizes (e.g. ``nn.Linear`` for fewer than 16 rows
    under AVX-512, ~4e-6 in the logits), which SPSA's sign-like first Adam step
    turns into whole-step pixel differences.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.inner(x[i:i + 1].clone()) for i in range(x.shape[0])])


def spsa_probes(model: nn.Module, x: Tensor, y: Tensor, delta: float, **options: object) -> list[bytes]:
    """The points one SPSA step evaluates around ``x`` (at L-inf distance ``delta``), as sorted raw bytes."""
    recording = Recording(model)
    SPSA(recording, 0.3, steps=1, delta=delta, lr=0.1, loss="ce", **options)(x, y)
    rows = torch.cat(recording.rows)
    dist = (rows[:, None] - x[None]).flatten(2).abs().amax(dim=2)          # (rows, examples)
    probe = ((dist - delta).abs() < 1e-6).any(dim=1)
    return sorted(r.numpy().tobytes() for r in rows[probe])


def test_spsa_chunking_draws_the_same_probes(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    """Exact: every example has its own random stream, so the evaluated points +-delta v do not depend on
    how they are grouped into forward passes (the probes are computed elementwise: no rounding differences)."""
    x, y = mnist_test[0][:6], mnist_test[1][:6]
    runs = [spsa_probes(sce_model, x, y, 0.01, samples=32, chunk=chunk, seed=5) for chunk in (8, 10, 16, 32, 1024)]
    assert len(runs[0]) == 6 * 32                                          # samples evaluations per example
    assert all(run == runs[0] for run in runs[1:])
    assert spsa_probes(sce_model, x, y, 0.01, samples=32, seed=6) != runs[0]


def test_spsa_chunked_and_unchunked_agree(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    """With a model whose rows do not depend on their batch, chunking changes only the float64 summation order
    of the gradient estimate (relative ~1e-16), which its rounding to float32 hides but for a rare last bit:
    the results agree to well below one float32 step of a pixel value (6e-8 near 1) times a few."""
    x, y = mnist_test[0][:6], mnist_test[1][:6]
    model = RowByRow(sce_model)
    runs = [SPSA(model, 0.3, steps=3, samples=32, lr=0.1, chunk=chunk, seed=5, loss="ce")(x, y)
            for chunk in (8, 10, 16, 32, 1024)]   # 4 pairs a forward, uneven 5+5+5+1, ... all 6 examples at once
    for other in runs[1:]:
        assert torch.allclose(runs[0], other, rtol=0, atol=1e-6)
    assert float((runs[0] - x).abs().max()) > 0.05                          # it did move
    other_seed = SPSA(model, 0.3, steps=3, samples=32, lr=0.1, seed=6, loss="ce")(x, y)
    assert not torch.allclose(runs[0], other_seed, atol=1e-3)


def test_spsa_chunk_bounds_the_model_batch(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 3)
    model = Recording(sce_model)                                   # a wrapper: the loss named explicitly
    SPSA(model, 0.05, steps=2, samples=256, chunk=64, loss="ce")(x, y)   # samples > chunk: split per example
    assert max(model.sizes) == 64
    # nothing beyond samples + 1 check per step, the logits check (1 row) and measuring the result (3 rows)
    assert sum(model.sizes) <= 1 + 3 + 3 * (1 + 2 * (256 + 1))
    model.sizes.clear()
    SPSA(model, 0.05, steps=2, samples=16, chunk=64, loss="ce")(x, y)    # samples < chunk: examples grouped
    assert max(model.sizes) <= 64 and 48 in model.sizes
    # forward passes only: never with autograd
    assert not any(model.grad_enabled)


@pytest.mark.parametrize("bad", [{"samples": 7}, {"samples": 0}, {"chunk": 1}, {"steps": 0}, {"eps": -0.1},
                                 {"lr": 0.0}, {"delta": 0.0}, {"loss": "nope"}])
def test_spsa_bad_options_rejected(sce_model: Classifier, bad: dict) -> None:
    with pytest.raises(UserError):
        ATTACKS.build("spsa", {"eps": 0.1, **bad}, model=sce_model)


# ------------------------------------------------------------------------------------------ DeepFool
def deepfool_reference(model: Classifier, x: Tensor, y: Tensor, overshoot: float, max_iter: int,
                       candidates: int) -> Tensor:
    """DeepFool-L2 one image and one class at a time (the same algorithm, unbatched)."""
    out = []
    for i in range(len(x)):
        x0, label = x[i:i + 1], int(y[i])
        with torch.no_grad():
            clean = model(x0)[0]
        others = [c for c in clean.argsort(descending=True).tolist() if c != label][:candidates - 1]
        r_tot = torch.zeros_like(x0)
        xi = x0.clone()
        fooled = False
        for _ in range(max_iter + 1):
            xg = xi.clone().requires_grad_(True)
            logits = model(xg)[0]
            if int(logits.argmax()) != label:
                fooled = True
                break
            best, w_best = math.inf, None
            for k in others:
                f = logits[k] - logits[label]
                (w,) = torch.autograd.grad(f, xg, retain_graph=True)
                pert = abs(float(f.detach())) / (float(w.norm()) + 1e-8)
                if pert < best:
                    best, w_best = pert, w
            r_tot = r_tot + (best + 1e-4) * w_best / (w_best.norm() + 1e-8)
            xi = (x0 + (1 + overshoot) * r_tot).clamp(0, 1).detach()
        out.append(xi if fooled else x0)
    return torch.cat(out)


def test_deepfool_fools_nearly_all_with_small_perturbations(sce_model: Classifier,
                                                            mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 50)
    result = DeepFool(sce_model).run(x, y)
    x_adv, d, ok = result.adversarial, result.distortion, result.success
    assert float(ok.float().mean()) >= 0.95
    hit, tie = hits(sce_model, x_adv, y)
    assert bool((hit | tie)[ok].all())
    assert torch.allclose(d, l2(x_adv - x), atol=1e-5)
    # measured 1.74 (avx2) / 1.90 (ATEN_CPU_CAPABILITY=default), 2.02 reported under AVX-512; fixtures
    # trained with 2 threads / train seeds 1, 2: 1.74 / 1.65-1.69, 1.46 (margin >= 0.58)
    assert float(d[ok].mean()) < 2.6
    # near-minimal: half of the perturbation leaves most points correctly classified
    half = predict(sce_model, x + 0.5 * (x_adv - x)) == y
    assert float(half[ok].float().mean()) >= 0.8                   # measured 1.0 on every fixture above


def test_deepfool_batched_matches_per_example_reference(sce_model: Classifier,
                                                       mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 3)
    x_adv = DeepFool(sce_model, max_iter=50)(x, y)
    with torch.enable_grad():
        ref = deepfool_reference(sce_model, x, y, overshoot=0.02, max_iter=50, candidates=10)
    assert torch.allclose(x_adv, ref, atol=1e-4)
    # also with fewer candidate classes
    x_adv = DeepFool(sce_model, candidates=3)(x, y)
    with torch.enable_grad():
        ref = deepfool_reference(sce_model, x, y, overshoot=0.02, max_iter=50, candidates=3)
    assert torch.allclose(x_adv, ref, atol=1e-4)


def test_deepfool_is_untargeted_only(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 2)
    with pytest.raises(UserError, match="targeted"):
        ATTACKS.build("deepfool", {"targeted": "true"}, model=sce_model)
    with pytest.raises(UserError, match="untargeted"):
        DeepFool(sce_model)(x, y, (y + 1) % 10)


@pytest.mark.parametrize("bad", [{"max_iter": 0}, {"candidates": 1}, {"overshoot": -0.1}])
def test_deepfool_bad_options_rejected(sce_model: Classifier, bad: dict) -> None:
    with pytest.raises(UserError):
        ATTACKS.build("deepfool", bad, model=sce_model)


# --------------------------------------------------------------------------------------------- SimBA
def test_simba_queries_within_budget_and_counted(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:20], mnist_test[1][:20]
    model = Recording(sce_model)
    result = SimBA(model, eps=0.2, max_queries=100).run(x, y)
    x_adv = result.adversarial
    assert result.queries == sum(model.sizes)      # every evaluated row is counted (also the check and the result)
    # at most 100 per image, plus the logits check (1 row) and measuring the result (1 row per image)
    assert len(x) < result.queries <= 1 + len(x) * (100 + 1)
    hit, tie = hits(sce_model, x_adv, y)
    assert bool(((result.success == hit) | tie).all())
    assert float((x_adv - x).abs().max()) <= 0.2 + 1e-6


def test_simba_accuracy_drops_with_budget(sce_model: Classifier, mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    clean = float((predict(sce_model, x) == y).float().mean())
    accs, successes = [], []
    for budget in (20, 150, 600):
        result = SimBA(sce_model, eps=0.2, max_queries=budget, seed=3).run(x, y)
        accs.append(float((predict(sce_model, result.adversarial) == y).float().mean()))
        successes.append(result.success)
    # accuracy drop at 600 queries: measured 0.36 (avx2, default), 0.34 (fixture trained with 2 threads);
    # train seeds 1, 2: 0.40, 0.68
    assert accs[0] >= accs[1] >= accs[2] and accs[2] <= clean - 0.2
    # the same seed walks the same coordinates, so a larger budget only adds successes
    assert bool((successes[1] >= successes[0]).all() and (successes[2] >= successes[1]).all())


def test_simba_targeted_and_untargeted_semantics(sce_model: Classifier,
                                                 mnist_test: tuple[Tensor, Tensor]) -> None:
    x, y = correct_points(sce_model, mnist_test, 30)
    targets = random_targets(y, 10, torch.Generator().manual_seed(4))
    result = SimBA(sce_model, eps=0.2, max_queries=2000, targeted=True).run(x, y, targets)
    hit, tie = hits(sce_model, result.adversarial, y, targets)
    assert bool(((result.success == hit) | tie).all())
    assert float(result.success.float().mean()) >= 0.1   # measured 0.27 (avx2, default); seeds 1, 2: 0.2-0.37, 0.5
    assert result.queries <= 1 + len(x) * (2000 + 1)
    untargeted = SimBA(sce_model, eps=0.2, max_queries=2000).run(x, y)
    hit, tie = hits(sce_model, untargeted.adversarial, y)
    assert bool(((untargeted.success == hit) | tie).all())
    assert float(untargeted.success.float().mean()) > float(result.success.float().mean())


@pytest.mark.parametrize("bad", [{"max_queries": 0}, {"eps": -0.2}, {"loss": "nope"}])
def test_simba_bad_options_rejected(sce_model: Classifier, bad: dict) -> None:
    with pytest.raises(UserError):
        ATTACKS.build("simba", bad, model=sce_model)
