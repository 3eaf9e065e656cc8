"""The objectives of the seed papers beyond SCE/MMC/MMLDA.

center, lgm, mmc-rand, emc, hmmc, isce, pc, gce, arcface, label-smoothing: values
against float64 hand computations (plain Python ``math`` on small explicit
numbers), gradients by ``gradcheck``, attack-loss sign conventions, a short
training run each, and out-of-range hyperparameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from robustloss import UserError, datasets
from robustloss.centers import mm_centers, random_centers
from robustloss.objectives import (EMC, GCE, HMMC, ISCE, LGM, MMC, OBJECTIVES, PC, ArcFace, CenterLoss,
                                   LabelSmoothing, MMCRand, build_objective)
from robustloss.runs import train_run
from robustloss.training import TrainConfig

D = torch.float64
NEW = ["center", "lgm", "mmc-rand", "emc", "hmmc", "isce", "pc", "gce", "arcface", "label-smoothing"]
OPTIONS: dict[str, dict[str, object]] = {"hmmc": {"tree": "0,0,1,1,1"}}


# ----------------------------------------------------------------------------- hand helpers
def _dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def _sq(u: list[float], v: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v))


def _linear(W: list[list[float]], b: list[float], z: list[float]) -> list[float]:
    return [_dot(w, z) + bk for w, bk in zip(W, b)]


def _softmax(a: list[float]) -> list[float]:
    m = max(a)
    e = [math.exp(x - m) for x in a]
    s = sum(e)
    return [x / s for x in e]


def _ce(a: list[float], y: int) -> float:
    m = max(a)
    return m + math.log(sum(math.exp(x - m) for x in a)) - a[y]


def _close(tensor: torch.Tensor, nested: list[list[float]]) -> bool:
    return torch.allclose(tensor, torch.tensor(nested, dtype=D), rtol=1e-10, atol=1e-12)


def _set_linear(obj: torch.nn.Module, W: list[list[float]], b: list[float]) -> None:
    with torch.no_grad():
        obj.head.weight.copy_(torch.tensor(W, dtype=D))
        obj.head.bias.copy_(torch.tensor(b, dtype=D))


Z = [[0.3, -1.2, 0.5], [1.5, 0.2, -0.7], [-0.4, 0.9, 1.1], [0.05, -0.3, -0.8]]
Y = [0, 2, 1, 3]
W4 = [[0.5, -0.2, 0.1], [-0.3, 0.8, 0.4], [0.2, 0.1, -0.6], [0.7, -0.5, 0.3]]
B4 = [0.1, -0.2, 0.05, 0.0]


def _zy() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(Z, dtype=D), torch.tensor(Y)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and fair to the other jobs on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registry_has_every_objective() -> None:
    assert set(NEW) | {"sce", "mmc", "mmlda"} <= set(OBJECTIVES.names())
    assert OBJECTIVES.defaults("isce") == {"s": 1.0, "m": 0.1, "normalize": "logits"}
    assert OBJECTIVES.defaults("pc")["xi"] == 0.995 and OBJECTIVES.defaults("pc")["lam"] == 0.05
    assert OBJECTIVES.defaults("gce")["alpha"] == 0.2
    assert OBJECTIVES.defaults("label-smoothing") == {"eps": 0.1}
    assert OBJECTIVES.defaults("arcface")["s"] == 64.0 and OBJECTIVES.defaults("arcface")["m"] == 0.5
    assert OBJECTIVES.defaults("hmmc")["c1"] == 10.0 and OBJECTIVES.defaults("hmmc")["c2"] == 1.0
    # string options from the command line are coerced to the defaults' types
    obj = build_objective("pc", 4, 3, {"xi": "0.9", "warmup_epochs": "2", "loss_form": "authors"})
    assert isinstance(obj, PC) and obj.xi == 0.9 and obj.warmup_epochs == 2 and obj.loss_form == "authors"


# ----------------------------------------------------------------------------- values by hand
def test_center_loss_value_and_update_by_hand() -> None:
    obj = CenterLoss(4, 3, lam=0.2, alpha=0.5).double()
    _set_linear(obj, W4, B4)
    C = [[0.1, 0.2, 0.3], [-0.5, 0.0, 0.4], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]
    obj.centers.copy_(torch.tensor(C, dtype=D))
    z, y = _zy()
    expected = sum(_ce(_linear(W4, B4, zi), yi) + 0.2 * 0.5 * _sq(zi, C[yi]) for zi, yi in zip(Z, Y)) / 4
    assert obj.loss(z, y).item() == pytest.approx(expected, rel=1e-12)
    # Wen et al. Eq. 4 on a batch with labels [0, 0, 2]: class 1 and 3 absent
    batch = torch.tensor(Z[:3], dtype=D)
    obj.on_batch_end(batch, torch.tensor([0, 0, 2]))
    new = obj.centers.tolist()
    d0 = [((C[0][k] - Z[0][k]) + (C[0][k] - Z[1][k])) / 3 for k in range(3)]
    d2 = [(C[2][k] - Z[2][k]) / 2 for k in range(3)]
    assert new[0] == pytest.approx([C[0][k] - 0.5 * d0[k] for k in range(3)])
    assert new[1] == pytest.approx(C[1]) and new[3] == pytest.approx(C[3])
    assert new[2] == pytest.approx([C[2][k] - 0.5 * d2[k] for k in range(3)])
    # centers are a buffer: the optimiser never sees them
    assert "centers" in dict(obj.named_buffers()) and "centers" not in dict(obj.named_parameters())


@pytest.mark.parametrize("covariance", ["identity", "diagonal"])
def test_lgm_value_by_hand(covariance: str) -> None:
    alpha, lam = 0.3, 0.2
    obj = LGM(4, 3, alpha=alpha, lam=lam, covariance=covariance).double()
    mu = [[0.5, 0.0, -0.5], [0.0, 1.0, 0.0], [-1.0, 0.2, 0.3], [0.4, -0.4, 0.1]]
    logvar = [[0.0] * 3 for _ in range(4)]
    with torch.no_grad():
        obj.means.copy_(torch.tensor(mu, dtype=D))
        if covariance == "diagonal":
            logvar = [[0.2, -0.3, 0.1], [0.0, 0.5, -0.2], [-0.4, 0.0, 0.3], [0.1, 0.1, 0.1]]
            obj.log_var.copy_(torch.tensor(logvar, dtype=D))
    z, y = _zy()
    total = 0.0
    pred = []
    for zi, yi in zip(Z, Y):
        d = [0.5 * sum((zi[i] - mu[k][i]) ** 2 / math.exp(logvar[k][i]) for i in range(3)) for k in range(4)]
        hld = [0.5 * sum(logvar[k]) for k in range(4)]
        margin = [-(d[k] * (1 + alpha if k == yi else 1.0)) - hld[k] for k in range(4)]
        total += _ce(margin, yi) + lam * (d[yi] + hld[yi])
        pred.append([-d[k] - hld[k] for k in range(4)])
    assert obj.loss(z, y).item() == pytest.approx(total / 4, rel=1e-12)
    assert _close(obj.logits(z), pred)    # no margin at prediction time
    if covariance == "identity":
        assert obj.log_var is None
        # likelihood term = 1/2 ||z - mu_y||^2
        assert obj.mahalanobis(z).gather(1, y[:, None]).squeeze(1).tolist() == pytest.approx(
            [0.5 * _sq(zi, mu[yi]) for zi, yi in zip(Z, Y)])


def test_mmc_rand_uses_seeded_random_centers() -> None:
    obj = MMCRand(4, 3, c_mm=2.0, seed=5).double()
    expected = random_centers(4, 3, 2.0, seed=5)
    assert torch.allclose(obj.centers, expected, atol=1e-6)
    assert torch.allclose(obj.centers.norm(dim=1), torch.full((4,), 2.0, dtype=D), atol=1e-6)
    assert not torch.allclose(MMCRand(4, 3, c_mm=2.0, seed=6).centers, obj.centers.float())
    assert not torch.allclose(obj.centers, mm_centers(4, 3, 2.0), atol=1e-3)
    z, y = _zy()
    mu = obj.centers.tolist()
    assert obj.per_example_loss(z, y).tolist() == pytest.approx([0.5 * _sq(zi, mu[yi]) for zi, yi in zip(Z, Y)])
    assert isinstance(obj, MMC) and obj.center_based and list(obj.parameters()) == []


def test_emc_value_by_hand_and_trainable_means() -> None:
    obj = EMC(4, 3, alpha=0.25, c_mm=2.0).double()
    star = obj.centers.tolist()
    assert torch.equal(obj.means.detach(), obj.centers)                   # mu starts at mu*
    assert [n for n, _ in obj.named_parameters()] == ["means"]
    shift = [[0.1, -0.2, 0.0], [0.3, 0.3, -0.1], [0.0, 0.0, 0.5], [-0.2, 0.1, 0.1]]
    with torch.no_grad():
        obj.means.add_(torch.tensor(shift, dtype=D))
    mu = obj.means.tolist()
    z, y = _zy()
    expected = sum(0.5 * _sq(zi, mu[yi]) + 1 / (2 * 0.25) * _sq(mu[yi], star[yi]) for zi, yi in zip(Z, Y)) / 4
    assert obj.loss(z, y).item() == pytest.approx(expected, rel=1e-12)
    # prediction logits and attack losses use the current means
    assert _close(obj.logits(z), [[-0.5 * _sq(zi, m) for m in mu] for zi in Z])
    assert obj.attack_loss(z, y).tolist() == pytest.approx([0.5 * _sq(zi, mu[yi]) for zi, yi in zip(Z, Y)])


def test_emc_tends_to_mmc_as_alpha_goes_to_zero() -> None:
    """With the means at the minimiser of L_EMC, loss and dL/dz converge to MMC's as alpha -> 0."""
    torch.manual_seed(0)
    z = torch.randn(12, 3, dtype=D) * 2
    y = torch.arange(12) % 4
    mmc = MMC(4, 3, c_mm=2.0).double()
    zg = z.clone().requires_grad_(True)
    mmc_loss = mmc.loss(zg, y)
    (mmc_grad,) = torch.autograd.grad(mmc_loss, zg)
    gaps = []
    for alpha in (1.0, 0.1, 0.01, 0.001, 1e-4):
        emc = EMC(4, 3, alpha=alpha, c_mm=2.0).double()
        assert emc.loss(z, y).item() == pytest.approx(mmc_loss.item())      # equal at mu = mu*
        opt = torch.optim.LBFGS([emc.means], lr=1, max_iter=200, tolerance_grad=1e-14,
                                tolerance_change=1e-16, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            value = emc.loss(z, y)
            value.backward()
            return value

        opt.step(closure)
        zg = z.clone().requires_grad_(True)
        loss = emc.loss(zg, y)
        (grad,) = torch.autograd.grad(loss, zg)
        gaps.append((abs(loss.item() - mmc_loss.item()), (grad - mmc_grad).abs().max().item()))
    for (l_prev, g_prev), (l_next, g_next) in zip(gaps, gaps[1:]):
        assert l_next < l_prev and g_next < g_prev
    assert gaps[0][0] > 0.1                       # alpha = 1 is genuinely different ...
    assert gaps[-1][0] < 1e-3 * mmc_loss.item() and gaps[-1][1] < 1e-4   # ... alpha -> 0 is MMC


def test_isce_value_by_hand_and_inference_rule() -> None:
    s, m = 1.5, 0.1
    obj = ISCE(4, 3, s=s, m=m).double()
    _set_linear(obj, W4, B4)
    z, y = _zy()
    total, pred = 0.0, []
    for zi, yi in zip(Z, Y):
        f = _linear(W4, B4, zi)
        n = math.sqrt(sum(v * v for v in f))
        f = [v / n for v in f]
        g = list(f)
        g[yi] = s * f[yi] + m
        total += _ce(g, yi)
        i = max(range(4), key=lambda k: f[k])
        h = list(f)
        h[i] = s * f[i] + m
        pred.append(h)
    assert obj.loss(z, y).item() == pytest.approx(total / 4, rel=1e-12)
    assert _close(obj.logits(z), pred)
    # "features" variant: normalise z, unnormalised head
    feat = ISCE(4, 3, s=s, m=m, normalize="features").double()
    _set_linear(feat, W4, B4)
    total = 0.0
    for zi, yi in zip(Z, Y):
        n = math.sqrt(sum(v * v for v in zi))
        g = _linear(W4, B4, [v / n for v in zi])
        g[yi] = s * g[yi] + m
        total += _ce(g, yi)
    assert feat.loss(z, y).item() == pytest.approx(total / 4, rel=1e-12)


@pytest.mark.parametrize("s", [1.0, 1.5, 2.0])
def test_isce_inference_keeps_the_predicted_class(s: float) -> None:
    torch.manual_seed(1)
    obj = ISCE(10, 8, s=s, m=0.1).double()
    z = torch.randn(400, 8, dtype=D)
    f = obj.normalized_logits(z)
    keep = (s - 1.0) * f.max(dim=1).values + 0.1 > 0          # the I-SCE paper's condition (App. A.2)
    if s == 1.0:
        assert bool(keep.all())
    assert torch.equal(obj.logits(z).argmax(1)[keep], f.argmax(1)[keep])
    assert int(keep.sum()) > 100


@pytest.mark.parametrize("loss_form,reduction,constraint", [("paper", "sum", "hard"), ("authors", "mean", "soft")])
def test_pc_value_by_hand(loss_form: str, reduction: str, constraint: str) -> None:
    xi, lam = 0.6, 0.3
    obj = PC(4, 3, xi=xi, lam=lam, loss_form=loss_form).double()
    _set_linear(obj, W4, B4)
    z, y = _zy()
    total = 0.0
    for zi, yi in zip(Z, Y):
        a = _linear(W4, B4, zi)
        p = _softmax(a)
        pc = sum(max(0.0, p[k] + xi - p[yi]) for k in range(4) if k != yi)
        if reduction == "mean":
            pc /= 3
        if constraint == "hard":
            j = max((k for k in range(4) if k != yi), key=lambda k: p[k])
            lc = max(0.0, a[yi] - a[j])
        else:
            norm = sum(math.exp(a[k]) for k in range(4) if k != yi)
            lc = sum(math.exp(a[k]) / norm * max(0.0, a[yi] - a[k]) for k in range(4) if k != yi)
        total += pc + lam * lc
    assert obj.loss(z, y).item() == pytest.approx(total / 4, rel=1e-12)


def test_pc_warmup_uses_cross_entropy_then_pc() -> None:
    obj = PC(4, 3, warmup_epochs=2).double()
    _set_linear(obj, W4, B4)
    z, y = _zy()
    ce = sum(_ce(_linear(W4, B4, zi), yi) for zi, yi in zip(Z, Y)) / 4
    pc_value = obj.loss(z, y).item()                 # outside training: PC
    obj.on_epoch_start(0, 5)
    assert obj.loss(z, y).item() == pytest.approx(ce, rel=1e-12)
    obj.on_epoch_start(1, 5)
    assert obj.loss(z, y).item() == pytest.approx(ce, rel=1e-12)
    obj.on_epoch_start(2, 5)
    assert obj.loss(z, y).item() == pytest.approx(pc_value)
    assert pc_value != pytest.approx(ce)


@pytest.mark.parametrize("normalize", [True, False])
def test_gce_value_by_hand(normalize: bool) -> None:
    alpha = 0.2
    obj = GCE(4, 3, alpha=alpha, normalize=normalize).double()
    _set_linear(obj, W4, B4)
    z, y = _zy()
    total = 0.0
    for zi, yi in zip(Z, Y):
        p = _softmax(_linear(W4, B4, zi))
        comp = 1 - p[yi]
        ent = sum(p[k] / comp * math.log(p[k] / comp) for k in range(4) if k != yi)
        value = p[yi] ** alpha * ent
        total += value / math.log(4) if normalize else value
    assert obj.loss(z, y).item() == pytest.approx(total / 4, rel=1e-10)
    # the complement entropy is maximal (loss minimal) for uniform false classes
    assert total / 4 < 0


@pytest.mark.parametrize("fallback", ["none", "insightface", "easy"])
def test_arcface_value_by_hand(fallback: str) -> None:
    s, m = 8.0, 0.5
    obj = ArcFace(4, 3, s=s, m=m, margin_fallback=fallback).double()
    with torch.no_grad():
        obj.weight.copy_(torch.tensor(W4, dtype=D))
    # the fourth example points away from its class weight: theta_y > pi - m
    zs = Z[:3] + [[-0.7, 0.45, -0.35]]
    z = torch.tensor(zs, dtype=D)
    y = torch.tensor(Y)
    total, pred, big_angle = 0.0, [], False
    for zi, yi in zip(zs, Y):
        nz = math.sqrt(_dot(zi, zi))
        cos = [_dot(zi, w) / (nz * math.sqrt(_dot(w, w))) for w in W4]
        theta = math.acos(cos[yi])
        big_angle |= theta > math.pi - m
        if fallback == "insightface" and theta > math.pi - m:
            target = cos[yi] - m * math.sin(m)
        elif fallback == "easy" and cos[yi] <= 0:
            target = cos[yi]
        else:
            target = math.cos(theta + m)
        g = list(cos)
        g[yi] = target
        total += _ce([s * v for v in g], yi)
        pred.append([s * v for v in cos])
    assert big_angle
    assert obj.loss(z, y).item() == pytest.approx(total / 4, rel=1e-10)
    assert _close(obj.logits(z), pred)      # no margin at prediction time


def test_label_smoothing_value_by_hand() -> None:
    eps = 0.2
    obj = LabelSmoothing(4, 3, eps=eps).double()
    _set_linear(obj, W4, B4)
    z, y = _zy()
    total = 0.0
    for zi, yi in zip(Z, Y):
        p = _softmax(_linear(W4, B4, zi))
        q = [(1 - eps) * (k == yi) + eps / 4 for k in range(4)]
        total += -sum(qk * math.log(pk) for qk, pk in zip(q, p))
    assert obj.loss(z, y).item() == pytest.approx(total / 4, rel=1e-12)
    torch_ls = F.cross_entropy(obj.logits(z), y, label_smoothing=eps)
    assert obj.loss(z, y).item() == pytest.approx(torch_ls.item(), rel=1e-12)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", NEW)
def test_gradcheck_loss_and_attack_losses(name: str) -> None:
    torch.manual_seed(3)
    options = dict(OPTIONS.get(name, {}))
    if name == "arcface":
        options["s"] = 4.0           # keep the float64 finite differences well conditioned
    if name == "pc":
        options["xi"] = 0.5          # hinges active but away from their kinks
    obj = build_objective(name, 5, 4, options).double()
    z = torch.randn(6, 4, dtype=D, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    t = torch.tensor([1, 2, 3, 4, 0, 2])
    assert torch.autograd.gradcheck(lambda v: obj.loss(v, y), (z,))
    for form in ("ce", "margin"):
        assert torch.autograd.gradcheck(lambda v: obj.attack_loss(v, y, None, form).sum(), (z,))
        assert torch.autograd.gradcheck(lambda v: obj.attack_loss(v, y, t, form).sum(), (z,))


@pytest.mark.parametrize("name,options", [("lgm", {"covariance": "diagonal"}), ("emc", {}),
                                          ("arcface", {"s": 4.0}), ("isce", {"s": 1.5}), ("gce", {})])
def test_gradcheck_wrt_objective_parameters(name: str, options: dict[str, object]) -> None:
    torch.manual_seed(4)
    obj = build_objective(name, 5, 4, options).double()
    z = torch.randn(6, 4, dtype=D)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    names = [n for n, _ in obj.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in obj.named_parameters())
    if name == "emc":                       # move the means off mu* so the prior term is active
        params = tuple((p + 0.1 * torch.randn_like(p)).detach().requires_grad_(True) for p in params)

    def loss(*values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(_LossOf(obj), {f"inner.{n}": v for n, v in zip(names, values)}, (z, y))

    assert torch.autograd.gradcheck(loss, params)


class _LossOf(torch.nn.Module):
    """``forward(z, y) = objective.loss(z, y)``, so ``functional_call`` can swap its parameters."""

    def __init__(self, objective: torch.nn.Module) -> None:
        super().__init__()
        self.inner = objective

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner.loss(z, y)


# ----------------------------------------------------------------------------- attack-loss conventions
def _margin(logits: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``a_ref - max_{j != ref} a_j`` (positive iff ``ref`` is predicted)."""
    own = logits.gather(1, ref[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(ref, logits.shape[1]).bool(), float("-inf")).amax(1)
    return own - other


def _class_loss(obj: torch.nn.Module, z: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The loss an attack on class ``ref`` is about: distance for center-based, CE for softmax."""
    if isinstance(obj, MMC):
        return obj.distances(z).gather(1, ref[:, None]).squeeze(1)
    return F.cross_entropy(obj.logits(z), ref, reduction="none")


@pytest.mark.parametrize("name", NEW)
def test_attack_loss_values_follow_the_sign_convention(name: str) -> None:
    torch.manual_seed(5)
    obj = build_objective(name, 5, 4, OPTIONS.get(name)).double()
    z = torch.randn(8, 4, dtype=D)
    y = torch.randint(0, 5, (8,))
    t = (y + 1) % 5
    a = obj.logits(z)
    assert torch.allclose(obj.attack_loss(z, y, None, "ce"), _class_loss(obj, z, y))
    assert torch.allclose(obj.attack_loss(z, y, t, "ce"), -_class_loss(obj, z, t))
    assert torch.allclose(obj.attack_loss(z, y, None, "margin"), -_margin(a, y))
    assert torch.allclose(obj.attack_loss(z, y, t, "margin"), _margin(a, t))


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("form", ["ce", "margin"])
def test_attack_ascent_steps_move_the_right_way(name: str, form: str) -> None:
    torch.manual_seed(6)
    options = dict(OPTIONS.get(name, {}))
    obj = build_objective(name, 5, 4, options).double()
    z = torch.randn(16, 4, dtype=D)
    y = torch.randint(0, 5, (16,))
    t = (y + 2) % 5
    for targets in (None, t):
        zg = z.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(obj.attack_loss(zg, y, targets, form).sum(), zg)
        step = z + 1e-4 * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-30)
        with torch.no_grad():
            if targets is None:
                if form == "ce":     # the true-class loss goes up
                    assert bool((_class_loss(obj, step, y) > _class_loss(obj, z, y)).all())
                else:                # the true-class logit margin goes down
                    assert bool((_margin(obj.logits(step), y) < _margin(obj.logits(z), y)).all())
            elif form == "ce":       # the target-class loss goes down
                assert bool((_class_loss(obj, step, t) < _class_loss(obj, z, t)).all())
            else:                    # the target's logit margin goes up
                assert bool((_margin(obj.logits(step), t) > _margin(obj.logits(z), t)).all())


def test_isce_and_arcface_attack_the_prediction_time_logits() -> None:
    torch.manual_seed(7)
    z = torch.randn(6, 4, dtype=D)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    isce = ISCE(5, 4).double()
    infer = isce.boost(isce.normalized_logits(z), isce.normalized_logits(z).argmax(1))
    assert torch.allclose(isce.attack_loss(z, y), F.cross_entropy(infer, y, reduction="none"))
    arc = ArcFace(5, 4, s=10.0).double()
    assert torch.allclose(arc.attack_loss(z, y, None, "margin"), -_margin(10.0 * arc.cosines(z), y))


# ----------------------------------------------------------------------------- state and training
@pytest.mark.parametrize("name", NEW)
def test_state_dict_round_trip(name: str) -> None:
    torch.manual_seed(8)
    a = build_objective(name, 5, 4, OPTIONS.get(name))
    torch.manual_seed(9)
    b = build_objective(name, 5, 4, OPTIONS.get(name))
    for tensor in a.state_dict().values():
        tensor.add_(0.25)
    b.load_state_dict(a.state_dict())
    z = torch.randn(3, 4)
    assert torch.equal(a.logits(z), b.logits(z))


# Center-based objectives learn with the default SGD recipe (the MMC paper: momentum SGD, lr 0.01); the
# linear-head ones need more than 3 epochs with it on the synthetic set (so does plain SCE), so
# they use Adam (lr 1e-3) - the PC paper trains PC with Adam as well.  HMMC (centers of norm up to
# c1 + c2 = 12) is unstable at lr 0.01: seeds 0-7 reach 0.61, 1.0, 0.86, 1.0, 1.0, 0.10, 0.10, 0.97
# (0.48 for seed 0 under ATEN_CPU_CAPABILITY=default); at lr 0.005 all eight reach >= 0.994 under both
# default and avx2 kernels (lr 0.003: >= 0.876, too slow for 3 epochs).  Measured minimum over seeds 0-7,
# default and avx2 alike, of the other cases: pc 0.826, gce 0.932, all others 1.0 (threshold 0.6).
ADAM = {"optimizer": "adam", "lr": 1e-3}
TRAIN_CASES = [
    ("center", {}, ADAM),
    ("lgm", {}, ADAM),
    ("lgm", {"covariance": "diagonal"}, ADAM),
    ("mmc-rand", {}, {}),
    ("emc", {}, {}),
    ("hmmc", {"tree": "0,0,1,1,2,2,3,3,4,4", "c2": 2.0}, {"lr": 0.005}),
    ("isce", {}, ADAM),
    ("pc", {"warmup_epochs": 1}, ADAM),
    ("gce", {}, ADAM),
    ("arcface", {}, ADAM),
    ("label-smoothing", {}, ADAM),
]


@pytest.fixture(scope="module")
def synthetic_test() -> tuple[torch.Tensor, torch.Tensor]:
    return datasets.load("synthetic", "test")


@pytest.mark.parametrize("name,options,optim", TRAIN_CASES,
                         ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o, _ in TRAIN_CASES])
def test_short_training_run_learns(name: str, options: dict[str, object], optim: dict[str, object],
                                   tmp_path: Path, synthetic_test: tuple[torch.Tensor, torch.Tensor]) -> None:
    config = TrainConfig(dataset="synthetic", model="lenet5", objective=name, objective_options=options,
                         epochs=3, batch_size=64, **optim)  # type: ignore[arg-type]
    model = train_run(config, tmp_path / name, progress=False, device="cpu")
    x, y = synthetic_test
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.6, f"{name} {options}: test accuracy {acc:.3f}"
    objective = model.objective
    if name == "center":                         # centers moved by the Wen et al. update
        assert objective.centers.abs().sum() > 0
    if name == "emc":                            # means trained by the optimiser
        assert not torch.allclose(objective.means, objective.centers)
    if name == "pc":
        assert objective.warming_up is False     # last epoch trained with PC


# ----------------------------------------------------------------------------- bad hyperparameters
BAD = [
    ("center", {"lam": -0.1}), ("center", {"alpha": 0.0}), ("center", {"alpha": 1.5}),
    ("lgm", {"alpha": -0.1}), ("lgm", {"lam": -1.0}), ("lgm", {"covariance": "full"}),
    ("mmc-rand", {"c_mm": 0.0}), ("mmc-rand", {"c_mm": -10.0}),
    ("emc", {"alpha": 0.0}), ("emc", {"alpha": -1.0}), ("emc", {"c_mm": 0.0}),
    ("hmmc", {}), ("hmmc", {"tree": "0,0,1"}), ("hmmc", {"tree": "cifar100"}),
    ("hmmc", {"tree": "0,0,2,2,2"}), ("hmmc", {"tree": "a,b,c,d,e"}), ("hmmc", {"tree": "0,0,1,1,-1"}),
    ("hmmc", {"tree": "0,0,1,1,1", "c1": 0.0}), ("hmmc", {"tree": "0,0,1,1,1", "c2": 0.0}),
    ("hmmc", {"tree": "0,0,1,1,1", "c1": 2.0, "c2": 2.0}),
    ("isce", {"s": 0.5}), ("isce", {"m": -0.1}), ("isce", {"normalize": "weights"}),
    ("pc", {"xi": 0.0}), ("pc", {"xi": 1.5}), ("pc", {"lam": -0.05}), ("pc", {"warmup_epochs": -1}),
    ("pc", {"loss_form": "eq6"}), ("pc", {"pc_reduction": "sum"}), ("pc", {"constraint": "soft"}),
    ("gce", {"alpha": 0.0}), ("gce", {"alpha": -0.2}),
    ("arcface", {"s": 0.5}), ("arcface", {"m": -0.1}), ("arcface", {"m": 4.0}),
    ("arcface", {"margin_fallback": "hard"}),
    ("label-smoothing", {"eps": -0.1}), ("label-smoothing", {"eps": 1.0}),
    ("pc", {"no_such_option": 1}),
]


@pytest.mark.parametrize("name,options", BAD, ids=[f"{n}-{o}" for n, o in BAD])
def test_bad_hyperparameters_are_user_errors(name: str, options: dict[str, object]) -> None:
    with pytest.raises(UserError):
        build_objective(name, 5, 4, options)


def test_nan_hyperparameter_is_rejected() -> None:
    with pytest.raises(UserError):
        build_objective("isce", 5, 4, {"m": "nan"})


def test_hmmc_is_mmc_on_hierarchical_centers() -> None:
    obj = HMMC(5, 4, tree="0,0,1,1,1", c1=6.0, c2=1.0).double()
    assert isinstance(obj, MMC) and obj.c1 == 6.0 and obj.c2 == 1.0
    from robustloss.centers import hierarchical_centers

    assert torch.allclose(obj.centers, hierarchical_centers([0, 0, 1, 1, 1], 4, 6.0, 1.0), atol=1e-5)
    z, y = _zy()
    z = torch.cat([z, torch.ones(4, 1, dtype=D)], dim=1)
    y = y % 5
    mu = obj.centers.tolist()
    assert obj.loss(z, y).item() == pytest.approx(
        sum(0.5 * _sq(zi, mu[yi]) for zi, yi in zip(z.tolist(), y.tolist())) / 4)
