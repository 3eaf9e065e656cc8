"""Any PyTorch model in: ``robustloss evaluate --model module.path:factory`` (src/robustloss/external.py).

The models come from ``tests/external_zoo.py`` (on ``sys.path`` next to this file).
One linear MNIST classifier is trained here on *normalised* inputs, so the
declared ``--mean/--std`` must be applied for it to work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import external_zoo
from conftest import run_cli
from robustloss import datasets, runs
from robustloss.errors import UserError
from robustloss.external import ExternalSpec, describe, load_external, parse_floats
from robustloss.evaluation.rows import RowStore
from robustloss.evaluation.suite import AttackSpec

HERE = Path(__file__).resolve().parent
SRC = Path(runs.__file__).resolve().parent.parent
MEAN, STD = 0.1307, 0.3081
PGD = "pgd:eps=0.1,steps=10,step_size=0.02,seed=5"


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = datasets.load("mnist", "test")
    return x[:200], y[:200]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``external_zoo.linear()`` trained (full-batch Adam, 80 steps) on 2,000 normalised MNIST training images."""
    x, y = datasets.load("mnist", "train")
    x, y = (x[:2000] - MEAN) / STD, y[:2000]
    torch.manual_seed(0)
    model = external_zoo.linear()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(80):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    path = tmp_path_factory.mktemp("ext") / "linear.pt"
    torch.save(model.state_dict(), path)
    return path


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ------------------------------------------------------------------------------------------ loading
def test_declared_preprocessing_wraps_the_model_with_its_weights(weights: Path,
                                                                 mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = mnist
    model = load_external(ExternalSpec("external_zoo:linear", str(weights), (MEAN,), (STD,)), x[:8])
    plain = external_zoo.linear()
    plain.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        expected = plain((x - MEAN) / STD)
        got = model(x)
    assert float((got - expected).abs().max()) <= 1e-5 * (1 + float(expected.abs().max()))
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    # measured: 0.88 with the declared normalisation, 0.54 without it on these 200 points
    assert _accuracy(model, x, y) >= 0.8
    raw = load_external(ExternalSpec("external_zoo:linear", str(weights)), x[:8])
    assert _accuracy(raw, x, y) < _accuracy(model, x, y) - 0.1
    info = describe(ExternalSpec("external_zoo:linear", str(weights), (MEAN,), (STD,)))
    import hashlib
    assert info["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["mean"] == [MEAN] and info["std"] == [STD]


def test_factory_kinds_and_prefixed_state_dicts(weights: Path, tmp_path: Path,
                                                mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = mnist[0][:8]
    state = torch.load(weights, weights_only=True)
    for target in ("external_zoo:linear", "external_zoo:INSTANCE"):
        assert isinstance(load_external(ExternalSpec(target), x).model, torch.nn.Sequential)
    assert isinstance(load_external(ExternalSpec("external_zoo:Linear"), x).model, external_zoo.Linear)
    wrapped = tmp_path / "dp.pt"     # DataParallel's "module." prefix, inside a checkpoint dict
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    model = load_external(ExternalSpec("external_zoo:linear", str(wrapped)), x)
    assert torch.equal(model.model[1].weight, state["1.weight"])


@pytest.mark.parametrize("factory, key", [("dict_output", "logits"), ("tuple_output", "1"),
                                          ("object_output", "logits")])
def test_output_key_selects_the_logits(factory: str, key: str, mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = mnist[0][:8]
    model = load_external(ExternalSpec(f"external_zoo:{factory}", output_key=key), x)
    with torch.no_grad():
        assert torch.equal(model(x), model.model.net(x))
    with pytest.raises(UserError, match="--output-key"):
        load_external(ExternalSpec(f"external_zoo:{factory}"), x)


def test_wrong_output_keys_name_what_exists(mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = mnist[0][:8]
    with pytest.raises(UserError, match=r"'logit' is not in the model's output dict \(keys: features, logits\)"):
        load_external(ExternalSpec("external_zoo:dict_output", output_key="logit"), x)
    with pytest.raises(UserError, match="tuple of 2 items; --output-key must be an index in 0..1, got '2'"):
        load_external(ExternalSpec("external_zoo:tuple_output", output_key="2"), x)
    with pytest.raises(UserError, match=r"torch.nn:Identity returns shape \(8, 1, 28, 28\) for inputs "
                                        r"\(8, 1, 28, 28\); expected logits \(N, classes\)"):
        load_external(ExternalSpec("torch.nn:Identity"), x)


def test_eval_mode_is_forced_and_randomised_models_are_refused(mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = mnist[0][:8]
    model = load_external(ExternalSpec("external_zoo:with_dropout"), x)   # built in training mode
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    with pytest.raises(UserError, match=r"is randomised: .* needs Expectation over Transformation \(EoT\) attacks"):
        load_external(ExternalSpec("external_zoo:noisy"), x)
    with pytest.raises(UserError, match="stays in training mode after .eval()"):
        load_external(ExternalSpec("external_zoo:stuck_in_training"), x)


def test_weights_that_do_not_fit_are_named(weights: Path, tmp_path: Path,
                                           mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    x = mnist[0][:8]
    with pytest.raises(UserError, match=r"do not fit external_zoo:Linear: missing keys fc.weight, fc.bias; "
                                        r"unexpected keys 1.weight, 1.bias$"):
        load_external(ExternalSpec("external_zoo:Linear", str(weights)), x)
    small = tmp_path / "small.pt"
    torch.save({"1.weight": torch.zeros(10, 100), "1.bias": torch.zeros(10)}, small)
    with pytest.raises(UserError, match=r"shape mismatch 1.weight \(10, 100\) vs \(10, 784\)"):
        load_external(ExternalSpec("external_zoo:linear", str(small)), x)
    pickled = tmp_path / "pickled.pt"
    torch.save({"1.weight": external_zoo.Payload()}, pickled)
    with pytest.raises(UserError, match="cannot load weights .* with weights_only=True"):
        load_external(ExternalSpec("external_zoo:linear", str(pickled)), x)


def test_spec_and_number_checks() -> None:
    assert parse_floats("0.5, 0.25", "--mean") == (0.5, 0.25) and parse_floats(None, "--mean") is None
    for text, message in [("a,b", "comma-separated numbers"), ("nan", "finite")]:
        with pytest.raises(UserError, match=message):
            parse_floats(text, "--std")
    for kwargs, message in [(dict(target="external_zoo"), "must be 'module.path:factory'"),
                            (dict(target="m:f", mean=(0.5,)), "--mean and --std go together"),
                            (dict(target="m:f", mean=(0.5, 0.5), std=(1.0,)), "--mean has 2 values but --std has 1"),
                            (dict(target="m:f", mean=(0.5,), std=(0.0,)), "--std values must be > 0"),
                            (dict(target="m:f", weights="/no/such.pt"), "weights file /no/such.pt not found")]:
        with pytest.raises(UserError, match=message):
            ExternalSpec(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ the command
@pytest.mark.parametrize("extra, message", [
    (["--model", "no_such_module_xyz:net"], "cannot import module 'no_such_module_xyz' (ModuleNotFoundError"),
    (["--model", "external_zoo:missing"], "module 'external_zoo' has no attribute 'missing'"),
    (["--model", "external_zoo:not_a_module"], "external_zoo:not_a_module returned a int, not a torch.nn.Module"),
    (["--model", "external_zoo:NOT_CALLABLE"], "is a int, neither a torch.nn.Module nor a function"),
    (["--model", "external_zoo:needs_arguments"], "calling it without arguments failed (TypeError"),
    (["--model", "external_zoo:fails"], "failed (RuntimeError: the factory broke)"),
    (["--model", "external_zoo:Linear", "--weights", "WEIGHTS"], "missing keys fc.weight, fc.bias"),
    (["--model", "external_zoo:noisy"], "needs Expectation over Transformation (EoT) attacks"),
    (["--model", "external_zoo:linear", "--mean", "0.5"], "--mean and --std go together"),
    (["--model", "external_zoo:linear", "--mean", "0.5,0.5", "--std", "1,1"], "--mean/--std give 2 channel(s)"),
    (["--model", "external_zoo:linear", "--attack", "pgd:eps=0.1,stepz=3"], "stepz"),
    (["--model", "external_zoo:linear", "--dataset", "imagenet"], "dataset"),
])
def test_bad_external_models_are_one_line_errors_that_create_nothing(
        extra: list[str], message: str, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["evaluate", *[str(weights) if a == "WEIGHTS" else a for a in extra], "--out", str(out), "--n", "10",
            "--device", "cpu", "--no-progress"]
    if "--dataset" not in extra:
        argv += ["--dataset", "mnist"]
    code, stdout, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and err.startswith("robustloss: error: "), err
    assert message in err, err
    assert not out.exists() and stdout == ""


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "external_zoo:linear", "--out", "o"], "--model needs --dataset"),
    (["evaluate", "--model", "external_zoo:linear", "--dataset", "mnist"], "--model needs --out"),
    (["evaluate"], "give a run folder (RUN_DIR) or an external model (--model module.path:factory)"),
    (["evaluate", "RUN", "--model", "external_zoo:linear", "--dataset", "mnist", "--out", "o"],
     "give either a run folder (RUN) or --model, not both"),
    (["evaluate", "RUN", "--mean", "0.5"], "--mean belong(s) to --model"),
])
def test_model_options_must_fit_together(argv: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_evaluate_an_external_model_end_to_end(weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               mnist: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The adaptive loss falls back to CE on the logits: the same rows as an explicit ``loss=ce`` (same seed)."""
    out = tmp_path / "ext"
    code, stdout, err = run_cli(
        capsys, "evaluate", "--model", "external_zoo:linear", "--weights", str(weights), "--mean", str(MEAN),
        "--std", str(STD), "--dataset", "mnist", "--attack", PGD, "--attack", f"{PGD},loss=ce", "--n", "100",
        "--batch-size", "40", "--name", "lin", "--out", str(out), "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "| external_zoo:linear |" in stdout and "note: non-adaptive attacks" in stdout
    summary = json.loads((out / "lin.json").read_text())
    x, y = mnist[0][:100], mnist[1][:100]
    model = load_external(ExternalSpec("external_zoo:linear", str(weights), (MEAN,), (STD,)), x[:8])
    assert summary["clean_accuracy"] == pytest.approx(_accuracy(model, x, y), abs=0.011)   # float ties only
    assert summary["model"]["external"] == "external_zoo:linear" and summary["dataset"] == "mnist"
    assert summary["note"] == ("non-adaptive attacks: no objective is known for this model, so pgd (adaptive -> "
                               "cross-entropy) attacked its logits")
    assert f"Note: {summary['note']}." in (out / "lin.md").read_text()
    adaptive, ce = summary["attacks"]
    assert 0 < adaptive["robust_accuracy"] < summary["clean_accuracy"]   # the attack does something
    assert adaptive["robust_accuracy"] == ce["robust_accuracy"]
    rows = RowStore(out / "lin.rows").load()
    first, second = (rows.attacks[a] for a in rows.attacks)
    assert {i: r["adv_pred"] for i, r in first.items()} == {i: r["adv_pred"] for i, r in second.items()}
    card = json.loads((out / "lin.robustbench.json").read_text())
    assert [a["adaptive"] for a in card["attacks"]] == [False, False]
    assert card["model"] == "external_zoo:linear" and card["objective"] is None and card["eps"] == 0.1


def test_rows_belong_to_the_weights(weights: Path, tmp_path: Path) -> None:
    """New weights in the same --out folder are evaluated afresh (the rows carry the weights' SHA-256)."""
    spec = [AttackSpec("fgsm", "fgsm", {"eps": 0.1})]
    common = dict(dataset="mnist", out=tmp_path / "o", name="r", n=60, device="cpu", progress=False)
    good = runs.evaluate_external(ExternalSpec("external_zoo:linear", str(weights), (MEAN,), (STD,)), spec, **common)
    zero = tmp_path / "zero.pt"
    torch.save({k: torch.zeros_like(v) for k, v in torch.load(weights, weights_only=True).items()}, zero)
    bad = runs.evaluate_external(ExternalSpec("external_zoo:linear", str(zero), (MEAN,), (STD,)), spec, **common)
    # all-zero logits predict class 0 everywhere: accuracy = share of zeros among the labels
    assert good["clean_accuracy"] >= 0.8 and bad["clean_accuracy"] < 0.2
    assert bad["model"]["weights_sha256"] != good["model"]["weights_sha256"]


def test_external_model_sharded_over_two_ranks(weights: Path, tmp_path: Path) -> None:
    """torchrun with 2 gloo ranks: the same per-example verdicts as one process (>= 99.5 %)."""
    args = ["evaluate", "--model", "external_zoo:linear", "--weights", str(weights), "--mean", str(MEAN), "--std",
            str(STD), "--dataset", "mnist", "--attack", PGD, "--worst-case", "--num-points", "120", "--batch-size",
            "32", "--device", "cpu", "--threads", "1", "--no-progress"]
    single = runs.evaluate_external(ExternalSpec("external_zoo:linear", str(weights), (MEAN,), (STD,)),
                                    [AttackSpec(PGD, "pgd", {"eps": 0.1, "steps": 10, "step_size": 0.02, "seed": 5})],
                                    dataset="mnist", out=tmp_path / "one", name="one", n=120, batch_size=120,
                                    device="cpu", worst_case=True, progress=False)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(HERE)]), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "robustloss", *args, "--out", str(tmp_path / "two"), "--name", "two"],
                          capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("note: non-adaptive attacks") == 1      # rank 0 alone reports
    two = json.loads((tmp_path / "two" / "two.json").read_text())
    same = sum(u == v for u, v in zip(single["worst_case_robust"], two["worst_case_robust"]))
    assert same >= 119 and two["n"] == 120 and two["clean_accuracy"] == single["clean_accuracy"]
    assert sorted(p.name for p in (tmp_path / "two" / "two.rows").glob("rank-*.jsonl")) == ["rank-0.jsonl",
                                                                                              "rank-1.jsonl"]


def test_external_models_stay_contiguous_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where our own backbones default to channels-last (AVX-512), an external model does not: it may ``.view()``."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    spec = [AttackSpec("fgsm", "fgsm", {"eps": 0.1})]
    common = dict(dataset="mnist", out=tmp_path / "o", n=20, device="cpu", progress=False)
    result = runs.evaluate_external(ExternalSpec("external_zoo:ConvView"), spec, name="default", **common)
    assert result["channels_last"] is False and 0.0 <= result["clean_accuracy"] <= 1.0
    # the reason for the rule: channels-last outputs break .view(); asked for anyway, a one-line error
    with pytest.raises(UserError, match=r"does not run with channels-last weights \(view.*--no-channels-last"):
        runs.evaluate_external(ExternalSpec("external_zoo:ConvView"), spec, name="asked", channels_last=True,
                               **common)
    assert not (tmp_path / "o" / "asked.json").exists()
