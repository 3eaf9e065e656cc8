"""Adaptivity through wrappers: every wrapper kind keeps the objective's adaptive loss, or is refused clearly.

Users attack ``nn.Sequential(normalize, clf)``, ``nn.DataParallel(clf)``, a DDP
module or a ``torch.compile``-d classifier.  The attack must find the objective
behind each of them (and apply the input-side layers first), never fall back to
plain CE silently; a wrapper it cannot see through is refused with a message
naming what to pass.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

from robustloss.attacks import ATTACKS, PGD, DeepFool, MultiTargetPGD
from robustloss.classifier import Classifier, locate_classifier
from robustloss.errors import UserError
from robustloss.models import LeNet5
from robustloss.objectives import MMC

SHAPE = (1, 16, 16)


@functools.lru_cache(maxsize=None)
def mmc_classifier() -> Classifier:
    """A tiny random-weight LeNet-5 + MMC whose features are spread (predictions flip under small changes)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = LeNet5(1, SHAPE[1], 8)
        with torch.no_grad():
            z = backbone(torch.rand(256, *SHAPE))
            last = backbone.dense[-1]
            factor = 3.0 / z.std(dim=0)
            last.weight.mul_(factor[:, None])
            last.bias.sub_(z.mean(dim=0)).mul_(factor)
        return Classifier(backbone, MMC(10, 8, c_mm=3.0)).eval()


class Normalize(nn.Module):
    """``(x - mean) / std``: the input-side layer users put in front of a classifier."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Holder(nn.Module):
    """A custom wrapper holding the classifier as ``.module``: robustloss cannot know what its forward does."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x * 0.5 + 0.25)


def batch(n: int = 6) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand((n, *SHAPE), generator=gen), torch.randint(0, 10, (n,), generator=gen)


@pytest.fixture(scope="module")
def process_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A one-process gloo group, so a DistributedDataParallel module can be built on the CPU."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    store = tmp_path_factory.mktemp("dist") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def wrap(kind: str, clf: Classifier) -> nn.Module:
    if kind == "sequential":
        return nn.Sequential(Normalize(0.0, 1.0), clf)
    if kind == "nested-sequential":
        return nn.Sequential(nn.Identity(), nn.Sequential(Normalize(0.0, 1.0), clf))
    if kind == "dataparallel":
        return nn.DataParallel(clf)
    if kind == "compiled":
        return torch.compile(clf)   # compiled lazily: attacks see through it and never trigger a compilation
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["sequential", "nested-sequential", "dataparallel", "compiled"])
def test_wrapped_classifier_is_attacked_adaptively(kind: str) -> None:
    """Same adaptive PGD result through the wrapper as on the classifier (the wrappers add no arithmetic)."""
    clf = mmc_classifier()
    x, y = batch()
    wrapped = wrap(kind, clf)
    located = locate_classifier(wrapped)
    assert located is not None and located.classifier is clf
    direct = PGD(clf, 0.1, 5, 0.03, seed=3).run(x, y)
    through = PGD(wrapped, 0.1, 5, 0.03, seed=3).run(x, y)
    assert torch.equal(through.adversarial, direct.adversarial)
    assert torch.equal(through.success, direct.success)
    # and it is the adaptive loss -L_MMC, not CE: the loss the attack maximises is the objective's
    attack = PGD(wrapped, 0.1, 5, 0.03)
    out = attack.forward(x)
    assert out.features is not None
    expected = clf.objective.attack_loss(clf.features(x), y)
    assert torch.allclose(attack.loss_fn(out, y, None), expected)


def test_ddp_wrapped_classifier_is_attacked_adaptively(process_group: None) -> None:
    clf = mmc_classifier()
    x, y = batch()
    ddp = nn.parallel.DistributedDataParallel(clf)
    assert locate_classifier(ddp) is not None
    direct = PGD(clf, 0.1, 5, 0.03, seed=3)(x, y)
    assert torch.equal(PGD(ddp, 0.1, 5, 0.03, seed=3)(x, y), direct)


def test_input_side_layers_are_applied_before_the_backbone() -> None:
    clf = mmc_classifier()
    x, y = batch()
    wrapped = nn.Sequential(Normalize(0.25, 0.5), clf)
    attack = PGD(wrapped, 0.1, 5, 0.03)
    out = attack.forward(x)
    z = clf.features((x - 0.25) / 0.5)
    assert torch.allclose(out.features, z) and torch.allclose(out.logits, wrapped(x))
    assert torch.allclose(attack.loss_fn(out, y, None), clf.objective.attack_loss(z, y))


def test_objective_dependent_attacks_see_through_wrappers() -> None:
    """Multi-target PGD picks its targets from the MMC centers, DeepFool linearises the objective's attack logits."""
    clf = mmc_classifier()
    x, y = batch()
    wrapped = nn.Sequential(Normalize(0.0, 1.0), clf)
    assert torch.equal(MultiTargetPGD(wrapped, 0.1, k=3).choose_targets(x, y),
                       MultiTargetPGD(clf, 0.1, k=3).choose_targets(x, y))
    assert torch.equal(DeepFool(wrapped, max_iter=5)(x, y), DeepFool(clf, max_iter=5)(x, y))


@pytest.mark.parametrize("name", ATTACKS.names())
def test_unknown_wrapper_is_refused_by_every_adaptive_attack(name: str, tmp_path: Path) -> None:
    """A wrapper whose forward robustloss cannot know: a clear error, never a silent CE attack."""
    from robustloss.registry import REQUIRED

    defaults = ATTACKS.defaults(name)
    params: dict[str, object] = {k: 0.1 if k == "eps" else 2 for k, v in defaults.items() if v is REQUIRED}
    if name == "transfer":
        params["substitute_model"] = mmc_classifier()
    model = Holder(mmc_classifier())
    attack_default = ATTACKS.get(name).default_loss   # type: ignore[attr-defined]
    if attack_default not in ("adaptive", "adaptive-margin") and "loss" not in params:
        # attacks that never use the objective (corruptions, SimBA's probabilities) attack the logits
        assert ATTACKS.build(name, params, model=model) is not None
        return
    if name == "transfer":   # the target is never differentiated; the *substitute* is what must be understood
        params["substitute_model"] = Holder(mmc_classifier())
    with pytest.raises(UserError, match="cannot tell how inputs reach it") as info:
        ATTACKS.build(name, params, model=model)
    message = str(info.value)
    assert "Holder" in message and "nn.Sequential(preprocess, classifier)" in message and "loss='ce'" in message
    assert len(message.splitlines()) == 1


def test_unknown_wrapper_can_be_attacked_on_its_logits_when_asked() -> None:
    clf = mmc_classifier()
    x, y = batch()
    model = Holder(clf)
    attack = PGD(model, 0.1, 5, 0.03, loss="ce")
    assert attack.located is None
    result = attack.run(x, y)
    assert torch.equal(result.prediction, model(result.adversarial).argmax(1))


def test_a_layer_after_the_classifier_is_refused() -> None:
    with pytest.raises(UserError, match="cannot tell how inputs reach it"):
        PGD(nn.Sequential(mmc_classifier(), nn.LogSoftmax(dim=1)), 0.1, 5)


def test_plain_model_without_classifier_gets_logit_losses() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 10))
    assert locate_classifier(model) is None
    attack = PGD(model, 0.1, 3)
    x, y = batch()
    assert attack.forward(x).features is None
    assert attack(x, y).shape == x.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_wrapped_classifier_on_cuda() -> None:
    clf = mmc_classifier().cuda()
    x, y = batch()
    result = PGD(nn.DataParallel(clf), 0.1, 5, 0.03).run(x.cuda(), y.cuda())
    assert result.adversarial.device.type == "cuda" and result.success.device.type == "cuda"
    mmc_classifier.cache_clear()
