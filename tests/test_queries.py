"""Per-example query counts (``AttackResult.example_queries``): every model evaluation an attack
makes is counted for the example it belongs to, or as one of the call's probes.

Checked two ways: against a forward hook that assigns every evaluated input row to the one
clean example whose eps ball holds it (independent of the attacks' bookkeeping), and against
counts worked out by hand from each attack's loop for examples that are never fooled (a tiny
eps) and examples misclassified from the start (wrong labels).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

from robustloss.attacks import ATTACKS
from robustloss.classifier import Classifier

from test_attack_invariants import SUBSTITUTE, Recorder, images, predict, tiny_model

N = 6
#: eps-bounded attacks (every evaluated point lies in its example's eps ball) and small budgets
BOUNDED: dict[str, dict[str, Any]] = {
    "apgd": {"eps": 0.02, "steps": 4, "restarts": 2, "loss": "dlr"},   # DLR: one more probe (the class count)
    "bim": {"eps": 0.02, "steps": 3},
    "fgsm": {"eps": 0.02},
    "mim": {"eps": 0.02, "steps": 3},
    "multitarget": {"eps": 0.02, "steps": 3, "k": 3},
    "pgd": {"eps": 0.02, "steps": 4, "restarts": 3},
    "simba": {"eps": 0.02, "max_queries": 9},
    "spsa": {"eps": 0.02, "steps": 2, "samples": 8, "chunk": 8},       # several forwards per step
    "transfer": {"substitute_model": SUBSTITUTE, "attack": "pgd", "eps": 0.02, "steps": 3},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _data(model: Classifier, wrong: bool = True) -> tuple[Tensor, Tensor]:
    """N smooth random images; the first half labelled with the model's prediction, the rest wrongly."""
    x = images(N, torch.Generator().manual_seed(7))
    y = predict(model, x)
    if wrong:
        y[N // 2:] = (y[N // 2:] + 1) % 10
    return x, y


def _build(name: str, model: Classifier, params: dict[str, Any]) -> Any:
    params = {k: (tiny_model("sce", 1) if v == SUBSTITUTE else v) for k, v in params.items()}
    return ATTACKS.build(name, params, model=model)


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_counts_match_the_rows_the_model_saw(name: str) -> None:
    model = tiny_model("mmc")
    x, y = _data(model)
    attack = _build(name, model, BOUNDED[name])
    with Recorder(model) as rec:
        result = attack.run(x, y)
    seen = torch.zeros(N, dtype=torch.long)
    clean = x.flatten(1)
    for rows in rec.rows:
        dist = torch.cdist(rows.double(), clean.double(), p=float("inf"))
        inside = dist <= BOUNDED[name]["eps"] * (1 + 1e-5) + 1e-6
        assert bool((inside.sum(dim=1) == 1).all()), "test data: every row must lie in exactly one eps ball"
        seen += torch.bincount(inside.double().argmax(dim=1), minlength=N)
    expected = result.example_queries.clone()
    expected[0] += attack.overhead_queries          # the probes are forwards of x[:1]
    assert attack.overhead_queries == (2 if name == "apgd" else 1)
    assert torch.equal(seen, expected), f"{name}: the model saw {seen.tolist()}, counted {expected.tolist()}"
    assert int(seen.sum()) == result.queries
    assert int(result.example_queries[N // 2:].max()) <= int(result.example_queries[:N // 2].min()), \
        f"{name}: examples misclassified from the start should cost least: {result.example_queries.tolist()}"


# hand counts for never-fooled examples (eps 1e-6) and examples misclassified from the start
def test_pgd_counts_by_hand() -> None:
    model = tiny_model("sce")
    x, y = _data(model)
    res = _build("pgd", model, {"eps": 1e-6, "steps": 4, "restarts": 3}).run(x, y)
    # robust: per restart 4 gradient steps + the restart's final check; + the call's final forward
    # fooled from the start: its first gradient evaluation sees the hit and it leaves; + the final forward
    assert res.example_queries.tolist() == [3 * (4 + 1) + 1] * (N // 2) + [2] * (N - N // 2)


def test_spsa_counts_by_hand() -> None:
    model = tiny_model("sce")
    x, y = _data(model)
    res = _build("spsa", model, {"eps": 1e-6, "steps": 3, "samples": 8}).run(x, y)
    # robust: the start check + per step 8 samples and the step's check + the final forward
    assert res.example_queries.tolist() == [1 + 3 * (8 + 1) + 1] * (N // 2) + [2] * (N - N // 2)


def test_simba_counts_by_hand() -> None:
    model = tiny_model("sce")
    x, y = _data(model)
    res = _build("simba", model, {"eps": 1e-6, "max_queries": 9}).run(x, y)
    # robust: max_queries scores (the first one included) + the final forward
    assert res.example_queries.tolist() == [9 + 1] * (N // 2) + [1 + 1] * (N - N // 2)


@pytest.mark.parametrize("name", ["cw", "deepfool", "gaussian-noise", "rotation"])
def test_unbounded_attacks_count_everything(name: str) -> None:
    model = tiny_model("sce")
    x, y = _data(model, wrong=False)
    params = {"cw": {"steps": 5, "search_steps": 2}, "deepfool": {"max_iter": 3}}.get(name, {})
    attack = _build(name, model, params)
    with Recorder(model) as rec:
        res = attack.run(x, y)
    assert res.example_queries is not None and bool((res.example_queries >= 1).all())
    assert int(res.example_queries.sum()) + attack.overhead_queries == res.queries == sum(len(r) for r in rec.rows)


def test_a_subclass_that_forwards_unnamed_sub_batches_gets_no_per_example_counts() -> None:
    from robustloss.attacks.pgd import PGD

    class Halves(PGD):
        def perturb(self, x: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
            self.forward(x[: max(1, len(x) // 2)])   # which rows? not said
            return super().perturb(x, labels, targets)

    model = tiny_model("sce")
    x, y = _data(model)
    res = Halves(model, eps=0.02, steps=2).run(x, y)
    assert res.example_queries is None and res.queries > 0
