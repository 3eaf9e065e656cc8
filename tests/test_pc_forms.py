"""PC-paper fidelity: the two forms of the PC loss (``loss_form``) and LeNet-5's ``feature_relu``.

Loss values are checked against numbers worked out by hand (logits ``ln 4, ln 2, 0, 0``
give probabilities ``1/2, 1/4, 1/8, 1/8``) and against an independent numpy
computation on random logits; gradients against the PC paper's Eq. 7; the options
through the registries, ``TrainConfig`` and the command line.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from robustloss import UserError
from robustloss.models import MODELS, LeNet5, build_backbone
from robustloss.objectives import OBJECTIVES, PC
from robustloss.registry import parse_options
from robustloss.training import TrainConfig, build_classifier

D = torch.float64
LN2 = math.log(2.0)


def _identity_head(obj: PC) -> PC:
    """``a = z``: feature_dim = K, W = I, b = 0, so the features are the logits."""
    with torch.no_grad():
        obj.head.weight.copy_(torch.eye(obj.num_classes, dtype=D))
        obj.head.bias.zero_()
    return obj


def _pc(loss_form: str, k: int = 4, **options: float) -> PC:
    return _identity_head(PC(k, k, loss_form=loss_form, **options).double())


# ----------------------------------------------------------------------------- by hand
# One logit vector a = (ln 4, ln 2, 0, 0), f = softmax(a) = (1/2, 1/4, 1/8, 1/8), three labels, xi = 0.3.
A = [math.log(4.0), LN2, 0.0, 0.0]
LABELS = [0, 2, 1]
# Eq. 6 hinges max(0, f_k + xi - f_y) over k != y:
#   y=0: 0.05, 0 (1/8 + 0.3 - 1/2 < 0), 0                  -> 0.05
#   y=2: 1/2 + 0.175, 1/4 + 0.175, 1/8 + 0.175 (xi - 1/8)  -> 1.4
#   y=1: 1/2 + 0.05, 1/8 + 0.05, 1/8 + 0.05 (xi - 1/4)     -> 0.9
PC_SUM = [0.05, 1.4, 0.9]
# Eq. 16, d_{y_j} = max(0, a_y - a_j), j = most probable false class:
#   y=0: j=1, ln 4 - ln 2 = ln 2;  y=2: j=0, 0 - ln 4 < 0 -> 0;  y=1: j=0, ln 2 - ln 4 < 0 -> 0
HARD = [LN2, 0.0, 0.0]
# authors' soft constraint sum_{k != y} softmax_{k != y}(a)_k max(0, a_y - a_k):
#   y=0: weights (2, 1, 1)/4 on gaps (ln 2, 2 ln 2, 2 ln 2)          -> 1/2 ln 2 + 1/2 ln 2 + 1/2 ln 2 = 3/2 ln 2
#   y=2: every gap a_y - a_k <= 0                                    -> 0
#   y=1: weights (4, 1, 1)/6 on gaps (0 [ln 2 - ln 4 < 0], ln 2, ln 2) -> 1/3 ln 2
SOFT = [1.5 * LN2, 0.0, LN2 / 3]


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([A] * 3, dtype=D), torch.tensor(LABELS)


def test_paper_form_by_hand() -> None:
    obj = _pc("paper", xi=0.3, lam=0.5)
    z, y = _batch()
    assert torch.allclose(obj.pc_term(z, y), torch.tensor(PC_SUM, dtype=D), rtol=0, atol=1e-12)
    assert torch.allclose(obj.constraint_term(z, y), torch.tensor(HARD, dtype=D), rtol=0, atol=1e-12)
    # Eqs. 6 + 16: mean over the batch of (sum over the K-1 false classes) + lam * d_{y_j}
    assert obj.loss(z, y).item() == pytest.approx((2.35 + 0.5 * LN2) / 3, rel=1e-12)


def test_authors_form_by_hand() -> None:
    obj = _pc("authors", xi=0.3, lam=0.5)
    z, y = _batch()
    assert torch.allclose(obj.pc_term(z, y), torch.tensor(PC_SUM, dtype=D) / 3, rtol=0, atol=1e-12)
    assert torch.allclose(obj.constraint_term(z, y), torch.tensor(SOFT, dtype=D), rtol=0, atol=1e-12)
    assert obj.loss(z, y).item() == pytest.approx((2.35 / 3 + 0.5 * (11 / 6) * LN2) / 3, rel=1e-12)


def test_eq7_gradient_of_one_active_hinge() -> None:
    """y=0 has one active Eq. 6 hinge (k=1): d/da_y = -f_y (1 - f_y + f_k) = -1/2 (1 - 1/2 + 1/4) (Eq. 7)."""
    obj = _pc("paper", xi=0.3, lam=0.0)
    z = torch.tensor([A], dtype=D, requires_grad=True)
    obj.loss(z, torch.tensor([0])).backward()
    assert z.grad is not None
    assert z.grad[0, 0].item() == pytest.approx(-0.375, rel=1e-12)
    # d/da_k of f_k - f_y for the active k: f_k (1 - f_k) + f_y f_k = 1/4 * 3/4 + 1/2 * 1/4
    assert z.grad[0, 1].item() == pytest.approx(0.3125, rel=1e-12)


def test_constraint_gradients_by_hand() -> None:
    """Hard (Eq. 16): only a_y and a_j move; soft (authors): every false logit."""
    obj = _pc("paper", xi=0.3, lam=1.0)
    z = torch.tensor([A], dtype=D, requires_grad=True)
    obj.constraint_term(z, torch.tensor([0])).sum().backward()
    assert z.grad is not None
    assert z.grad[0].tolist() == [1.0, -1.0, 0.0, 0.0]
    soft = _pc("authors", xi=0.3, lam=1.0)
    z.grad = None
    soft.constraint_term(z, torch.tensor([0])).sum().backward()
    # the soft form pulls on every false logit, through the gaps and (as in the authors' code) the
    # weights: d/da_y = sum_k w_k = 1; d/da_k = w_k (g_k - S - 1) with g = (ln 2, 2 ln 2, 2 ln 2),
    # w = (1/2, 1/4, 1/4), S = sum_k w_k g_k = 3/2 ln 2
    assert z.grad is not None
    expected = [1.0, 0.5 * (-0.5 * LN2 - 1), 0.25 * (0.5 * LN2 - 1), 0.25 * (0.5 * LN2 - 1)]
    assert torch.allclose(z.grad[0], torch.tensor(expected, dtype=D), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- numpy reference
def _numpy_paper(a: np.ndarray, y: np.ndarray, xi: float, lam: float) -> float:
    total = 0.0
    for ai, yi in zip(a, y):
        f = np.exp(ai - ai.max())
        f /= f.sum()
        false = [k for k in range(len(ai)) if k != yi]
        pc = sum(max(0.0, f[k] + xi - f[yi]) for k in false)
        j = max(false, key=lambda k: f[k])
        total += pc + lam * max(0.0, ai[yi] - ai[j])
    return total / len(a)


def _numpy_authors_code(a: np.ndarray, y: np.ndarray, xi: float, lam: float) -> float:
    """The authors' algebra written out: the hinge summed over *all* K classes (the true
    class adds exactly xi), batch mean, minus xi, over K-1; soft constraint with the
    true logit pushed to -1000 before the softmax."""
    n, k = a.shape
    f = np.exp(a - a.max(axis=1, keepdims=True))
    f /= f.sum(axis=1, keepdims=True)
    f_y = f[np.arange(n), y][:, None]
    pc = (np.maximum(0.0, xi + f - f_y).sum() / n - xi) / (k - 1)
    onehot = np.eye(k)[y]
    a_y = a[np.arange(n), y][:, None]
    masked = a * (1 - onehot) - 1000.0 * onehot
    w = np.exp(masked - masked.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    soft = np.maximum(0.0, w * (a_y - a)).sum() / n
    return float(pc + lam * soft)


@pytest.mark.parametrize("k", [2, 4, 10])
def test_both_forms_match_numpy_on_random_logits(k: int) -> None:
    rng = np.random.default_rng(k)
    xi, lam = 0.995, 0.05
    for scale in (0.3, 3.0, 30.0):                 # flat, moderate and saturated softmax
        a = rng.normal(scale=scale, size=(32, k))
        y = rng.integers(0, k, size=32)
        z, labels = torch.tensor(a, dtype=D), torch.tensor(y)
        paper = _pc("paper", k, xi=xi, lam=lam).loss(z, labels).item()
        authors = _pc("authors", k, xi=xi, lam=lam).loss(z, labels).item()
        assert paper == pytest.approx(_numpy_paper(a, y, xi, lam), rel=1e-10, abs=1e-12)
        assert authors == pytest.approx(_numpy_authors_code(a, y, xi, lam), rel=1e-10, abs=1e-12)


# ----------------------------------------------------------------------------- attack losses
def test_attack_losses_agree_with_the_constraint_and_ignore_the_form() -> None:
    """The margin attack loss is a_j - a_y with Eq. 16's j: d_{y_j} = max(0, -margin) (paper form),
    and the soft constraint weighs every false gap, so it is >= d_{y_j}.  The form changes
    training only: both objectives give the same attack losses on the same head."""
    torch.manual_seed(0)
    z = torch.randn(64, 10, dtype=D) * 3
    y = torch.randint(0, 10, (64,))
    paper, authors = _pc("paper", 10), _pc("authors", 10)
    margin = paper.attack_loss(z, y, form="margin")
    assert torch.allclose(paper.constraint_term(z, y), (-margin).clamp_min(0.0), rtol=0, atol=1e-12)
    assert bool((authors.constraint_term(z, y) >= (-margin).clamp_min(0.0) - 1e-12).all())
    assert bool(((margin > 0) == (z.argmax(1) != y)).all())    # > 0 iff misclassified (base.py)
    ce = torch.nn.functional.cross_entropy(z, y, reduction="none")
    for obj in (paper, authors):
        assert torch.allclose(obj.attack_loss(z, y, form="ce"), ce, rtol=1e-12, atol=1e-12)
        assert torch.allclose(obj.attack_loss(z, y, form="margin"), margin, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- options
def test_loss_form_through_the_registry() -> None:
    assert OBJECTIVES.defaults("pc")["loss_form"] == "paper"
    z, y = _batch()
    for form, expected in (("paper", (2.35 + 0.5 * LN2) / 3),
                           ("authors", (2.35 / 3 + 0.5 * (11 / 6) * LN2) / 3)):
        obj = OBJECTIVES.build("pc", {"loss_form": form, "xi": "0.3", "lam": "0.5"}, num_classes=4,
                               feature_dim=4)
        assert isinstance(obj, PC) and obj.loss_form == form
        assert _identity_head(obj.double()).loss(z, y).item() == pytest.approx(expected, rel=1e-12)


def test_loss_form_and_feature_relu_through_train_config() -> None:
    config = TrainConfig(dataset="synthetic", model="lenet5", objective="pc",
                         objective_options={"loss_form": "authors"}, model_options={"feature_relu": "true"})
    assert config.objective_options["loss_form"] == "authors" and config.model_options["feature_relu"] is True
    again = TrainConfig.from_dict(config.to_dict())
    assert again.objective_options == config.objective_options and again.model_options == config.model_options
    model = build_classifier(config)
    assert isinstance(model.objective, PC) and model.objective.loss_form == "authors"
    assert isinstance(model.backbone, LeNet5) and model.backbone.feature_relu is True
    default = TrainConfig(dataset="synthetic", model="lenet5", objective="pc")
    assert default.objective_options["loss_form"] == "paper" and default.model_options["feature_relu"] is False


@pytest.mark.parametrize("options", [{"loss_form": "eq6"}, {"loss_form": "Paper"}])
def test_bad_loss_form_lists_the_choices(options: dict[str, str]) -> None:
    with pytest.raises(UserError, match=r"unknown loss_form '.*'; valid choices: authors, paper$"):
        OBJECTIVES.build("pc", options, num_classes=10, feature_dim=84)
    with pytest.raises(UserError, match="valid choices: authors, paper"):
        build_classifier(TrainConfig(dataset="synthetic", model="lenet5", objective="pc",
                                     objective_options=options))


def test_retired_pc_options_name_the_valid_ones() -> None:
    for old in ("pc_reduction", "constraint"):
        with pytest.raises(UserError, match=r"has no option '.*'; valid options: .*loss_form"):
            OBJECTIVES.build("pc", {old: "sum"}, num_classes=10, feature_dim=84)


# ----------------------------------------------------------------------------- LeNet-5 feature ReLU
def test_feature_relu_clamps_z_and_changes_nothing_else() -> None:
    torch.manual_seed(0)
    plain = LeNet5()
    relu = LeNet5(feature_relu=True)
    relu.load_state_dict(plain.state_dict())               # same parameters: the ReLU has none
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        z_plain, z_relu = plain(x), relu(x)
    assert (z_plain < 0).any(), "default z is unconstrained in sign (MMC centers need it)"
    assert bool((z_relu >= 0).all()) and (z_relu == 0).any()
    # identical ops in identical order, then ReLU: bitwise equal
    assert torch.equal(z_relu, z_plain.clamp_min(0.0))


def test_feature_relu_through_the_model_registry() -> None:
    assert MODELS.defaults("lenet5")["feature_relu"] is False
    backbone = build_backbone("lenet5", 1, 28, parse_options(["feature_relu=true", "feature_dim=2"]))
    assert isinstance(backbone, LeNet5) and backbone.feature_relu and backbone.feature_dim == 2
    assert isinstance(backbone.dense[-1], torch.nn.ReLU)
    assert not isinstance(build_backbone("lenet5", 1, 28).dense[-1], torch.nn.ReLU)
    with pytest.raises(UserError, match="feature_relu='maybe': expected true or false"):
        build_backbone("lenet5", 1, 28, {"feature_relu": "maybe"})


def test_cli_lists_and_checks_both_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "list", "models")
    assert code == 0 and "lenet5: feature_dim=84, feature_relu=False" in out
    code, out, _ = run_cli(capsys, "list", "objectives")
    assert code == 0 and "loss_form=paper" in out
    code, _, err = run_cli(capsys, "train", "--objective", "pc", "-O", "loss_form=eq6", "--out",
                           str(tmp_path / "x"))
    assert code == 2 and "unknown loss_form 'eq6'; valid choices: authors, paper" in err
    code, _, err = run_cli(capsys, "train", "-M", "feature_relu=maybe", "--out", str(tmp_path / "y"))
    assert code == 2 and "feature_relu='maybe': expected true or false" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
