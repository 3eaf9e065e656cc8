"""Property-based invariants that EVERY attack of the ``ATTACKS`` registry must satisfy.

The tests are parametrised over ``ATTACKS.names()``, so an attack registered
later is covered automatically - it only needs a small, fast parameter set in
:data:`FAST` below (an attack without one fails with a message saying so).

Checked on a tiny random-weight ``Classifier(LeNet5(1, 16, 8), MMC / SCE)`` and
random 1x16x16 inputs: the output is a detached tensor of the input's shape in
the bounds and (for attacks with ``eps``) in the ``eps`` ball; a zero budget
returns the input exactly; inputs, model parameters and their ``.grad`` are
untouched; each module's training mode is restored; a fixed seed gives the same
output (also the same attack object called twice); every attack returns the
same :class:`AttackResult` (success = misclassified / target hit at the
returned point, distortion in the attack's norm, the model's prediction, the
queries used, each attributed to its example or to a probe), and attacks that keep the first fooling iterate return a fooling
point whenever they evaluated one; other input bounds ([-1, 1]) are honoured; on
a GPU the output stays on it (skipped without one).  Error cases: targets equal
to the labels (any targets for untargeted-only attacks), inputs outside the
bounds, a model returning probabilities or a tuple, an unknown norm.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from robustloss.attacks import ATTACKS, Attack
from robustloss.attacks.base import lp_norm
from robustloss.classifier import Classifier
from robustloss.errors import UserError
from robustloss.models import LeNet5
from robustloss.objectives import MMC, SCE

from conftest import hits

CLASSES = 10
SHAPE = (1, 16, 16)
SUBSTITUTE = "<substitute>"   # placeholder for a second tiny model (transfer attacks)

#: name -> small, fast parameters.  ``zero``: parameters that must return the input
#: unchanged (default ``{"eps": 0.0}`` when the attack has an ``eps``; ``None``: no such
#: setting - a minimum-norm attack, checked on already misclassified inputs instead).
#: ``keeps_hits``: the attack returns, for every example, a fooling point whenever one of
#: the points it evaluated on the attacked model fooled it.
FAST: dict[str, dict[str, Any]] = {
    "apgd": {"params": {"eps": 0.1, "steps": 3}, "keeps_hits": True},
    "bim": {"params": {"eps": 0.1, "steps": 3}, "keeps_hits": True},
    "cw": {"params": {"steps": 5, "search_steps": 2}, "zero": None},
    "deepfool": {"params": {"max_iter": 3}, "zero": None},
    "fgsm": {"params": {"eps": 0.1}, "keeps_hits": True},
    "gaussian-noise": {"params": {"sigma": 0.1}, "zero": {"sigma": 0.0}},
    "mim": {"params": {"eps": 0.1, "steps": 3}, "keeps_hits": True},
    "multitarget": {"params": {"eps": 0.1, "steps": 3, "k": 2}, "keeps_hits": True},
    "pgd": {"params": {"eps": 0.1, "steps": 3}, "keeps_hits": True},
    "rotation": {"params": {"degrees": 20.0}, "zero": {"degrees": 0.0}},
    "simba": {"params": {"eps": 0.2, "max_queries": 20}},
    "spsa": {"params": {"eps": 0.1, "steps": 2, "samples": 8}},
    "transfer": {"params": {"substitute_model": SUBSTITUTE, "attack": "mim", "eps": 0.1, "steps": 3}},
}


def fast(name: str) -> dict[str, Any]:
    if name not in FAST:
        pytest.fail(f"attack '{name}' is registered in ATTACKS but has no fast parameter set; add an entry "
                    f"for it to FAST in tests/test_attack_invariants.py (options: {ATTACKS.describe(name)})")
    return FAST[name]


def options(name: str) -> dict[str, Any]:
    return ATTACKS.defaults(name)


def images(n: int, generator: torch.Generator) -> Tensor:
    """Smooth random images in [0, 1] (4x4 noise upsampled), more varied than i.i.d. pixels."""
    coarse = torch.rand((n, SHAPE[0], 4, 4), generator=generator)
    return F.interpolate(coarse, size=SHAPE[1:], mode="bilinear", align_corners=False).clamp(0, 1)


@functools.lru_cache(maxsize=None)
def tiny_model(objective: str, seed: int = 0) -> Classifier:
    """A random-weight LeNet-5 whose features are standardised on random images.

    Without that, random features barely depend on the input and the model
    predicts one class everywhere (nothing to attack); standardised, the
    predictions spread over the classes and flip under small perturbations.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        backbone = LeNet5(1, SHAPE[1], 8)
        head = MMC(CLASSES, 8, c_mm=3.0) if objective == "mmc" else SCE(CLASSES, 8)
        with torch.no_grad():
            z = backbone(images(512, torch.Generator().manual_seed(seed + 1000)))
            last = backbone.dense[-1]
            factor = 3.0 / z.std(dim=0)
            last.weight.mul_(factor[:, None])
            last.bias.sub_(z.mean(dim=0)).mul_(factor)
        return Classifier(backbone, head)


def build(name: str, model: nn.Module, **overrides: Any) -> Attack:
    params = {**fast(name)["params"], **overrides}
    params = {k: (tiny_model("sce", 1) if v == SUBSTITUTE else v) for k, v in params.items()}
    return ATTACKS.build(name, params, model=model)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models run far faster single-threaded on a shared 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class Recorder:
    """Records the prediction of every input row the attacked Classifier's backbone sees."""

    def __init__(self, model: Classifier) -> None:
        self.model = model
        self.rows: list[Tensor] = []
        self.preds: list[Tensor] = []

    def __enter__(self) -> Recorder:
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], z: Tensor) -> None:
            self.rows.append(inputs[0].detach().flatten(1).clone())
            self.preds.append(self.model.objective.logits(z.detach()).argmax(dim=1))
        self.handle = self.model.backbone.register_forward_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()

    def hits_seen(self, x: Tensor, labels: Tensor, targets: Tensor | None, eps: float, norm: str) -> Tensor:
        """Per example: did some evaluated *perturbed* point (!= x) fool the model?

        A recorded row belongs to the one clean example whose ``eps`` ball holds it
        (rows in no ball or in several are ignored).
        """
        seen = torch.zeros(x.shape[0], dtype=torch.bool)
        clean = x.flatten(1)
        for rows, preds in zip(self.rows, self.preds):
            dist = torch.cdist(rows.double(), clean.double(), p=float("inf") if norm == "linf" else 2.0)
            inside = dist <= eps * (1 + 1e-5) + 1e-6
            owner = dist.argmin(dim=1)
            mine = (inside.sum(dim=1) == 1) & (rows != clean[owner]).any(dim=1)
            hit = preds != labels[owner] if targets is None else preds == targets[owner]
            seen[owner[mine & hit]] = True
        return seen


def predict(model: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ATTACKS.names())
@settings(max_examples=15, deadline=None)
@given(data_seed=st.integers(0, 2**16), n=st.integers(1, 4), objective=st.sampled_from(["mmc", "sce"]),
       eps=st.floats(0.005, 0.3), norm=st.sampled_from(["linf", "l2"]), targeted=st.booleans(),
       given_targets=st.booleans(), seed=st.integers(0, 100), true_labels=st.booleans(), big_steps=st.booleans())
def test_attack_invariants(name: str, data_seed: int, n: int, objective: str, eps: float, norm: str,
                           targeted: bool, given_targets: bool, seed: int, true_labels: bool, big_steps: bool) -> None:
    spec, opts = fast(name), options(name)
    model = tiny_model(objective)
    overrides: dict[str, Any] = {"seed": seed}
    if "eps" in opts:
        overrides["eps"] = eps * (4.0 if norm == "l2" else 1.0)
    if "norm" in opts:
        overrides["norm"] = norm
    if big_steps and "eps" in opts and "step_size" in opts:   # overshooting steps: the loss goes up and down
        overrides["step_size"] = 2 * overrides["eps"]
    targeted = targeted and "targeted" in opts
    if targeted:
        overrides["targeted"] = True
    attack = build(name, model, **overrides)

    gen = torch.Generator().manual_seed(data_seed)
    x = images(n, gen)
    y = predict(model, x) if true_labels else torch.randint(0, CLASSES, (n,), generator=gen)
    targets = (y + torch.randint(1, CLASSES, (n,), generator=gen)) % CLASSES if targeted and given_targets else None
    x0, y0, t0 = x.clone(), y.clone(), None if targets is None else targets.clone()
    models = [m for m in (model, getattr(attack, "substitute", None)) if isinstance(m, nn.Module)]
    states = [snapshot(m) for m in models]
    for m in models:
        m.train()
    try:
        with Recorder(model) as rec:
            result = attack.run(x, y, targets)
        x_adv = result.adversarial
        # training mode of every module restored, nothing written to the models
        for m, state in zip(models, states):
            assert all(mod.training for mod in m.modules()), f"{name}: training mode not restored"
            assert all(p.grad is None for p in m.parameters()), f"{name}: wrote .grad of model parameters"
            assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items()), f"{name}: changed the model"
    finally:
        for m in models:
            m.eval()
    # inputs untouched
    assert torch.equal(x, x0) and torch.equal(y, y0), f"{name}: modified its inputs"
    assert targets is None or torch.equal(targets, t0), f"{name}: modified the targets"
    # output: a detached tensor of the same shape, in the bounds and in the eps ball
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert x_adv.data_ptr() != x.data_ptr()
    assert bool(torch.isfinite(x_adv).all())
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, f"{name}: output outside [0, 1]"
    if hasattr(attack, "eps") and not attack.minimum_norm:
        dist = lp_norm(x_adv - x, getattr(attack, "norm", "linf"))
        assert bool((dist <= attack.eps * (1 + 1e-5) + 1e-6).all()), f"{name}: left the eps ball: {dist} > {attack.eps}"
    # one result shape for every attack, measured at the returned point
    pred = predict(model, x_adv)
    assert torch.equal(result.prediction, pred), f"{name}: prediction is not the model's class at x_adv"
    fooled = pred == targets if targets is not None else pred != y
    if targets is not None or not targeted:
        assert torch.equal(result.success, fooled), f"{name}: success is not 'fooled' at the returned point"
    else:   # random targets drawn inside: a hit on a target is a misclassification
        assert bool((pred != y)[result.success].all()), f"{name}: reported a success that is not one"
    assert result.success.dtype == torch.bool and result.success.shape == (n,)
    assert torch.allclose(result.distortion, lp_norm(x_adv - x, attack.norm)), f"{name}: distortion"
    assert isinstance(result.queries, int) and result.queries >= n, f"{name}: queries {result.queries}"
    # every model evaluation is spent on an example or is one of the call's probes
    per = result.example_queries
    assert per is not None and per.shape == (n,) and per.dtype == torch.long, f"{name}: example_queries {per}"
    assert bool((per >= 1).all()), f"{name}: an example without the final evaluation: {per}"
    assert int(per.sum()) + attack.overhead_queries == result.queries, \
        f"{name}: {per.tolist()} + {attack.overhead_queries} probe(s) != {result.queries} queries"
    if spec.get("keeps_hits") and hasattr(attack, "eps") and (targets is not None or not targeted):
        seen = rec.hits_seen(x, y, targets, attack.eps, getattr(attack, "norm", "linf"))
        hit, tie = hits(model, x_adv, y, targets)   # the recorder saw rows in batches of other sizes: float ties
        assert bool((hit | tie)[seen].all()), f"{name}: evaluated a fooling point but returned one that does not fool"
    # determinism: a fresh attack with the same seed, and the same attack called again, give the same output
    again = build(name, model, **overrides)(x, y, targets)
    assert torch.equal(again, x_adv), f"{name}: not deterministic for a fixed seed"
    assert torch.equal(attack(x, y, targets), x_adv), f"{name}: a second call of the same attack differs"


@pytest.mark.parametrize("name", ATTACKS.names())
@settings(max_examples=5, deadline=None)
@given(data_seed=st.integers(0, 2**16), objective=st.sampled_from(["mmc", "sce"]), targeted=st.booleans())
def test_zero_budget_returns_input(name: str, data_seed: int, objective: str, targeted: bool) -> None:
    spec, opts = fast(name), options(name)
    zero = spec.get("zero", {"eps": 0.0} if "eps" in opts else None)
    gen = torch.Generator().manual_seed(data_seed)
    x = images(3, gen)
    model = tiny_model(objective)
    if zero is None:
        # a minimum-norm attack has no budget to set to zero; its zero case: labels the model does not predict
        # (already "fooled") are returned unchanged, with distortion 0
        assert ATTACKS.get(name).minimum_norm, f"{name}: give FAST an entry 'zero' (parameters of zero budget)"
        result = build(name, model).run(x, (predict(model, x) + 1) % CLASSES)
        assert torch.equal(result.adversarial, x) and bool(result.success.all())
        assert torch.equal(result.distortion, torch.zeros(3))
        return
    overrides = dict(zero)
    if targeted and "targeted" in opts:
        overrides["targeted"] = True
    y = torch.randint(0, CLASSES, (3,), generator=gen)
    x_adv = build(name, model, **overrides)(x, y)
    assert torch.equal(x_adv, x)


#: budgets with which the minimum-norm attacks fool the tiny model (FAST's are too small to, mostly)
MINIMUM_NORM_BUDGET: dict[str, dict[str, Any]] = {"deepfool": {"max_iter": 50},
                                                  "cw": {"steps": 50, "initial_const": 10.0}}


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize("name", ATTACKS.names())
def test_other_input_bounds(name: str, targeted: bool) -> None:
    """Inputs in [-1, 1] with ``bounds=(-1, 1)``: outputs stay in those bounds and in the eps ball, and
    are not clamped to the default [0, 1] (the inputs lie mostly below 0)."""
    opts = options(name)
    overrides: dict[str, Any] = {"bounds": (-1.0, 1.0), **MINIMUM_NORM_BUDGET.get(name, {})}
    if "eps" in opts:
        overrides["eps"] = 0.4
    if targeted and "targeted" in opts:
        overrides["targeted"] = True
    model = tiny_model("sce")
    gen = torch.Generator().manual_seed(7)
    x = images(6, gen) * 1.2 - 1.0                  # in [-1, 0.2], many pixels within eps of -1
    x[:, :, :2] = -1.0                              # some exactly on the lower bound
    y = predict(model, x)
    attack = build(name, model, **overrides)
    result = attack.run(x, y)
    x_adv = result.adversarial
    assert not torch.equal(x_adv, x), f"{name}: did not attack"
    if attack.minimum_norm:     # measured (avx2 and default kernels): 6 of 6 fooled; C&W targeted 2 of 6
        assert bool(result.success.any()), f"{name}: no success"
    assert float(x_adv.min()) >= -1.0 and float(x_adv.max()) <= 1.0, f"{name}: output outside [-1, 1]"
    # 97% of the input pixels are < 0; measured 76-98% of the output pixels (FGSM lowest)
    assert float((x_adv < 0).float().mean()) > 0.5, f"{name}: output clamped to [0, 1]"
    if hasattr(attack, "eps") and not attack.minimum_norm:
        dist = lp_norm(x_adv - x, getattr(attack, "norm", "linf"))
        assert bool((dist <= attack.eps * (1 + 1e-5) + 1e-6).all()), f"{name}: left the eps ball"
    with pytest.raises(UserError, match="bounds"):     # and the bounds are still checked
        attack(x - 0.5, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU path of the "
                                                           "attacks is not exercised here")
@pytest.mark.parametrize("name", ATTACKS.names())
def test_attacks_run_on_cuda(name: str) -> None:
    import copy

    model = copy.deepcopy(tiny_model("mmc")).cuda()
    params = {"substitute_model": copy.deepcopy(tiny_model("sce", 1)).cuda()} if name == "transfer" else {}
    gen = torch.Generator().manual_seed(3)
    x = images(4, gen).cuda()
    y = predict(model, x)
    x_adv = ATTACKS.build(name, {**fast(name)["params"], **params}, model=model)(x, y)
    assert x_adv.device.type == "cuda" and x_adv.shape == x.shape
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


# ---------------------------------------------------------------------------- error cases
def plain_model() -> nn.Module:
    """A model from elsewhere (no robustloss Classifier inside)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(SHAPE[1] * SHAPE[2], CLASSES))


class Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x).softmax(dim=1)


class Tupled(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.inner(x)
        return out, out


def batch(n: int = 3) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand((n, *SHAPE), generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_targets_equal_to_labels_rejected(name: str) -> None:
    x, y = batch()
    if "targeted" not in options(name):         # untargeted only: any targets are refused
        with pytest.raises(UserError, match="target"):
            build(name, tiny_model("mmc"))(x, y, (y + 1) % CLASSES)
        return
    with pytest.raises(UserError, match="target"):
        build(name, tiny_model("mmc"), targeted=True)(x, y, y.clone())


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("low, high", [(-0.5, 1.0), (0.0, 1.5)])
def test_inputs_outside_bounds_rejected(name: str, low: float, high: float) -> None:
    x, y = batch()
    x = x * (high - low) + low
    with pytest.raises(UserError, match="bounds"):
        build(name, tiny_model("sce"))(x, y)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_model_returning_probabilities_rejected(name: str) -> None:
    x, y = batch()
    with pytest.raises(UserError, match="probabilities"):
        build(name, Softmaxed(plain_model()))(x, y)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_model_returning_tuple_rejected(name: str) -> None:
    x, y = batch()
    with pytest.raises(UserError, match="tuple"):
        build(name, Tupled(plain_model()))(x, y)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_unknown_norm_rejected(name: str) -> None:
    # an attack without a norm option refuses the option itself
    message = "unknown norm 'l3'" if "norm" in options(name) else "has no option 'norm'"
    with pytest.raises(UserError, match=message):
        build(name, tiny_model("sce"), norm="l3")


# ------------------------------------------------- option errors of the issue-4 gradient attacks
@pytest.mark.parametrize("name, bad", [
    ("fgsm", {"eps": -0.1}), ("bim", {"steps": 0}), ("mim", {"decay": -1.0}), ("mim", {"loss": "nope"}),
    ("apgd", {"rho": 1.5}), ("apgd", {"momentum": -0.1}), ("apgd", {"steps": 0}), ("apgd", {"loss": "nope"}),
    ("multitarget", {"k": 0}), ("multitarget", {"restarts": 0}), ("gaussian-noise", {"sigma": -1.0}),
    ("rotation", {"degrees": 200.0}), ("transfer", {"attack": "cw"}), ("transfer", {"substitute_model": None}),
    ("transfer", {"bogus": 0.5}), ("transfer", {"eps": -1.0}),
])
def test_bad_options_rejected(name: str, bad: dict[str, Any]) -> None:
    with pytest.raises(UserError):
        build(name, tiny_model("sce"), **bad)


def test_transfer_passes_extra_options_to_the_crafting_attack() -> None:
    from robustloss.attacks import TransferAttack

    attack = TransferAttack(tiny_model("mmc"), tiny_model("sce", 1), attack="mim", eps=0.1, steps=2, decay=0.5)
    assert attack.params()["decay"] == 0.5 and attack.params()["attack"] == "mim"


def test_rotation_needs_images() -> None:
    model = nn.Sequential(nn.Linear(5, CLASSES))
    with pytest.raises(UserError, match="N, C, H, W"):
        ATTACKS.build("rotation", {}, model=model)(torch.rand(4, 5), torch.zeros(4, dtype=torch.long))


def test_apgd_dlr_needs_three_classes() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 2))
    x, y = torch.rand(4, *SHAPE), torch.zeros(4, dtype=torch.long)
    with pytest.raises(UserError, match="DLR"):
        ATTACKS.build("apgd", {"loss": "dlr", "steps": 2, "eps": 0.1}, model=model)(x, y)


def test_rotation_by_quarter_turn_is_exact() -> None:
    import math

    from robustloss.attacks.corruptions import rotate

    x = torch.rand(2, 1, 7, 7)
    out = rotate(x, torch.tensor([math.pi / 2, -math.pi / 2]))
    assert torch.allclose(out[0], torch.rot90(x[0], 1, (1, 2)), atol=1e-5)
    assert torch.allclose(out[1], torch.rot90(x[1], -1, (1, 2)), atol=1e-5)
