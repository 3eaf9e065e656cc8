"""Gradient-masking diagnostics: pass on honest models, and each check fails on a model built to mask gradients."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from robustloss.classifier import Classifier
from robustloss.errors import UserError
from robustloss.evaluation.diagnostics import CHECKS, Check, default_eps, diagnose, markdown, summary, warning_lines
from robustloss.evaluation.suite import SUITES, AttackSpec, load_suite

Data = tuple[Tensor, Tensor]


class InputSide(nn.Module):
    """An input-side layer that changes only how gradients flow, not (much) the forward."""

    def transform(self, x: Tensor) -> Tensor:
        raise NotImplementedError  # each masking layer below defines it

    def forward(self, x: Tensor) -> Tensor:
        return self.transform(x)


class Masked(nn.Sequential):
    """``nn.Sequential(masking layer, classifier)``: attacks still find the objective (adaptive loss)."""

    layer: type[InputSide]

    def __init__(self, model: nn.Module) -> None:
        super().__init__(self.layer(), model)


class _Round(InputSide):
    def transform(self, x: Tensor) -> Tensor:
        return torch.round(x * 64) / 64


class Quantised(Masked):
    """Rounds the input to 1/64 steps: the forward barely changes, the input gradient is exactly zero."""

    layer = _Round


class _Detach(InputSide):
    def transform(self, x: Tensor) -> Tensor:
        return x.detach()


class Detached(Masked):
    """Detaches the input: the loss does not reach the input through autograd at all."""

    layer = _Detach


class _GridOnly(InputSide):
    def transform(self, x: Tensor) -> Tensor:
        on_grid = (x * 256 - torch.round(x * 256)).abs() < 1e-4
        return torch.where(on_grid, x, x.detach())


class GridOnlyGradient(Masked):
    """Gradients flow only through pixels on the data's k/256 grid.

    At a clean image (all pixels on the grid) the gradient is informative, so
    FGSM works; a random start or one small step moves pixels off the grid,
    where the gradient vanishes, so PGD is stuck: iterative < one-step.
    """

    layer = _GridOnly


class _SqrtSquared(InputSide):
    def transform(self, x: Tensor) -> Tensor:
        return torch.sqrt(x) ** 2


class NaNGradient(Masked):
    """``sqrt(x)^2``: the same forward, but a NaN gradient (0 * inf) at every black pixel."""

    layer = _SqrtSquared


class Wrapped(nn.Module):
    """A trained model behind an output-side change: attacked on its logits (``loss="ce"``), never adaptively."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Saturated(Wrapped):
    """Logits scaled by 1e4: the softmax saturates, CE and its gradient are exactly zero on confident points."""

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * 1e4


class Noisy(Wrapped):
    """Random noise on the logits in every forward pass, also in eval mode."""

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) + 3.0 * torch.randn(x.shape[0], 10, device=x.device)


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.mark.parametrize("fixture", ["sce_model", "mmc_model"])
def test_trained_models_pass_every_check(request: pytest.FixtureRequest, fixture: str, mnist_test: Data) -> None:
    model: Classifier = request.getfixturevalue(fixture)
    x, y = mnist_test
    checks = diagnose(model, x, y, eps=0.3)
    assert [c.name for c in checks] == list(CHECKS)
    for c in checks:
        print(f"{fixture} {c.name}: {c.detail}")
    assert all(c.passed for c in checks), [c.detail for c in checks if not c.passed]
    by = _by_name(checks)
    v = by["iterative-beats-one-step"].values
    assert v["n"] == 200 and v["pgd_accuracy"] < v["fgsm_accuracy"] < v["clean_accuracy"]
    assert by["white-box-beats-black-box"].values["n"] == 50
    assert by["accuracy-falls-with-eps"].values["eps"] == [0.3, 0.6, 1.0]
    assert by["accuracy-falls-with-eps"].values["pgd_accuracy"][-1] == 0.0
    assert by["finite-nonzero-gradients"].values["zero_fraction_clean"] == 0.0
    assert by["deterministic-outputs"].values["max_abs_logit_difference"] == 0.0


def test_model_mode_is_restored_and_eval_mode_is_used(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test
    was_training = sce_model.training
    model = nn.Sequential(sce_model, nn.Dropout(0.5))   # random in train mode only
    model.train()
    try:
        (check,) = diagnose(model, x, y, eps=0.3, n=50, checks=["deterministic-outputs"], loss="ce")
        assert check.passed, check.detail
        assert model.training and model[1].training and sce_model.training
    finally:
        sce_model.train(was_training)


def test_iterative_check_fails_when_only_clean_points_have_gradients(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test
    (check,) = diagnose(GridOnlyGradient(sce_model), x, y, eps=0.3, n=100, checks=["iterative-beats-one-step"])
    assert not check.passed, check.detail
    assert check.values["pgd_accuracy"] > check.values["fgsm_accuracy"] + 0.2
    assert "FGSM" in check.detail and "gradient masking?" in check.detail


def test_black_box_check_fails_when_gradients_are_quantised_away(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test
    (check,) = diagnose(Quantised(sce_model), x, y, eps=0.3, n=40, spsa_n=40,
                        checks=["white-box-beats-black-box"])
    assert not check.passed, check.detail
    # SPSA only evaluates the model, so the rounding does not stop it
    assert check.values["spsa_accuracy"] < check.values["pgd_accuracy"] - 0.3
    assert check.values["n"] == 40 and check.values["spsa_lr"] == pytest.approx(0.03)


@pytest.mark.parametrize("wrapper", [Quantised, Saturated])
def test_eps_check_fails_when_pgd_cannot_fool_at_unbounded_eps(wrapper: type[nn.Module], sce_model: Classifier,
                                                               mnist_test: Data) -> None:
    x, y = mnist_test
    loss = "ce" if issubclass(wrapper, Wrapped) else None
    (check,) = diagnose(wrapper(sce_model), x, y, eps=0.3, n=60, steps=10, checks=["accuracy-falls-with-eps"],
                        loss=loss)
    assert not check.passed, check.detail
    assert check.values["pgd_accuracy"][-1] > 0.05 and "eps=1" in check.detail


@pytest.mark.parametrize("wrapper,key", [(Quantised, "zero_fraction_clean"), (Detached, "zero_fraction_clean"),
                                         (Saturated, "zero_fraction_clean"), (NaNGradient, "nonfinite_fraction_clean")])
def test_gradient_check_fails_on_zero_or_nan_gradients(wrapper: type[nn.Module], key: str, sce_model: Classifier,
                                                       mnist_test: Data) -> None:
    x, y = mnist_test
    loss = "ce" if issubclass(wrapper, Wrapped) else None
    (check,) = diagnose(wrapper(sce_model), x, y, eps=0.3, n=100, checks=["finite-nonzero-gradients"], loss=loss)
    assert not check.passed, check.detail
    assert check.values[key] > 0.9


def test_gradient_attacks_that_cannot_run_fail_their_checks(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test
    checks = diagnose(Detached(sce_model), x, y, eps=0.3, n=20, steps=2,
                      checks=["iterative-beats-one-step", "accuracy-falls-with-eps"])
    assert [c.passed for c in checks] == [False, False]   # a crash inside a check is a failed check
    assert all("the check crashed: RuntimeError" in c.detail and "error" in c.values for c in checks)


def test_randomness_check_fails_on_a_noisy_model(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test
    (check,) = diagnose(Noisy(sce_model), x, y, eps=0.3, n=100, checks=["deterministic-outputs"], loss="ce")
    assert not check.passed and "attacks need EoT" in check.detail and "eot=10" in check.detail
    assert check.values["max_abs_logit_difference"] > 1 and check.values["prediction_changes"] > 0


def test_summary_warnings_and_markdown() -> None:
    checks = [Check("iterative-beats-one-step", True, "PGD-20 0.0% <= FGSM 20.0% (ok)"),
              Check("deterministic-outputs", False, "differ by up to 3 | 5")]
    diag = summary(checks, eps=0.3, n=200)
    assert diag["passed"] is False and diag["eps"] == 0.3 and len(diag["checks"]) == 2
    assert warning_lines(checks) == warning_lines(diag["checks"]) == [
        "WARNING: diagnostic 'deterministic-outputs' failed: differ by up to 3 | 5"]
    text = markdown(diag)
    assert "## Diagnostics (eps=0.3)" in text and "## Warnings" in text and "**FAIL**" in text
    assert text.split("## Warnings")[1].count("- WARNING") == 1
    assert "None: every gradient-masking check passed" in markdown(summary(checks[:1], eps=0.3))


@pytest.mark.parametrize("kwargs,message", [
    ({"eps": 0.0}, "eps must be in (0, inf)"),
    ({"eps": 0.3, "checks": ["foo"]}, "unknown diagnostic check 'foo'; valid choices: accuracy-falls-with-eps"),
    ({"eps": 0.3, "spsa_samples": 3}, "spsa_samples must be even"),
    ({"eps": 0.3, "n": 0}, "n must be an integer >= 1"),
    ({"eps": 0.3, "tolerance": 2.0}, "tolerance must be in [0, 1]"),
    ({"eps": 0.3, "large_eps": 0.1}, "large_eps must be in [0.3, inf)"),
    ({"eps": 0.3, "loss": "foo"}, "unknown attack loss 'foo'"),
])
def test_bad_arguments_are_user_errors(sce_model: Classifier, mnist_test: Data, kwargs: dict[str, object],
                                       message: str) -> None:
    x, y = mnist_test
    with pytest.raises(UserError, match=None) as info:
        diagnose(sce_model, x[:4], y[:4], **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    with pytest.raises(UserError, match="non-empty batch"):
        diagnose(sce_model, x[:0], y[:0], eps=0.3)


def test_default_eps_is_the_suites_largest_linf_eps() -> None:
    assert default_eps(load_suite("mnist-full")) == pytest.approx(0.3)
    assert default_eps(load_suite("mnist-pgd")) == pytest.approx(0.3)
    assert default_eps(SUITES["cifar-full"]) == pytest.approx(8 / 255)
    assert default_eps(load_suite("cifar-pgd")) == pytest.approx(16 / 255)
    with pytest.raises(UserError, match="--diagnose-eps"):   # eps is required: a spec without one has none
        default_eps([AttackSpec("FGSM", "fgsm", {})])
    assert default_eps([AttackSpec("a", "pgd", {"eps": "0.1", "steps": 2}),
                        AttackSpec("b", "pgd", {"eps": 2.0, "steps": 2, "norm": "l2"})]) == pytest.approx(0.1)
    assert default_eps(load_suite("mnist-full"), 0.2) == pytest.approx(0.2)
    with pytest.raises(UserError, match="--diagnose-eps"):
        default_eps(load_suite("mnist-corruptions"))
    with pytest.raises(UserError, match="eps must be in"):
        default_eps(load_suite("mnist-full"), -1.0)
