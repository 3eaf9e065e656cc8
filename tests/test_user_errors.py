"""User mistakes, by class of problem: one line, exit code 2, nothing created or destroyed.

Each class is fixed at its root (the unpickler, the config/registry validators,
the strict JSON reader, the checkpoint loader, the CLI's I/O handler, the atomic
writer); these tests hold each root to its contract.
"""

from __future__ import annotations

import errno
import gzip
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import run_cli
from robustloss import datasets
from robustloss.attacks import ATTACKS
from robustloss.errors import UserError, check_seed
from robustloss.evaluation.suite import MAX_LABEL, AttackSpec, load_suite, parse_spec
from robustloss.io import atomic_write, atomic_write_text, read_json
from robustloss.models import build_backbone
from robustloss.registry import coerce
from robustloss.runs import train_run
from robustloss.training import TrainConfig
from robustloss.training.checkpoint import load_checkpoint, save_checkpoint
from robustloss.training.trainer import build_classifier

QUICK = ("--dataset", "synthetic", "--epochs", "1", "--train-limit", "64", "--no-progress", "--device", "cpu")


def _one_line_exit_2(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for folders): to prove nothing changed."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch synthetic run, never evaluated (so ``eval/`` must never appear)."""
    out = tmp_path_factory.mktemp("user-errors") / "run"
    config = TrainConfig(dataset="synthetic", epochs=1, train_limit=64, batch_size=32)
    train_run(config, out, progress=False, device="cpu")
    return out


# ============================================================================ 1. pickles run no code
class _Payload:
    """Unpickling this with plain ``pickle`` would create ``marker`` (i.e. run code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _cifar10_test_batch(n: int = 20) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"batch_label": "testing batch 1 of 1", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, n)],
            "filenames": [f"img_{i}.png" for i in range(n)]}


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_format_cifar_batch_loads(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = _cifar10_test_batch()
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    x, y = datasets.load("cifar10", "test", tmp_path)
    assert x.shape == (20, 3, 32, 32) and y.tolist() == batch["labels"]
    assert torch.equal(x, torch.from_numpy(batch["data"].reshape(-1, 3, 32, 32)).float() / 255)


@pytest.mark.parametrize("where", ["whole file", "inside the batch"])
def test_crafted_cifar_pickle_is_refused_and_runs_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          where: str) -> None:
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    batch: Any = _Payload(marker)
    if where == "inside the batch":
        batch = {**_cifar10_test_batch(), "labels": _Payload(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(UserError, match=r"holds objects other than plain arrays \(io\.open\) and was not "
                                        r"loaded"):
        datasets.load("cifar10", "test", tmp_path / "data")
    assert not marker.exists()
    # the same through the command line: one line, exit 2, and still no code ran
    for split_file in [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / split_file).write_bytes(pickle.dumps(batch))
    code, _, err = run_cli(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
                           "--epochs", "1", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run"))
    _one_line_exit_2(code, err, "holds objects other than plain arrays")
    assert not marker.exists()


def test_a_plain_pickle_global_other_than_numpy_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    # a harmless-looking but disallowed global (a set): only numpy array reconstruction is admitted
    (folder / "test_batch").write_bytes(pickle.dumps({**_cifar10_test_batch(), "labels": frozenset({1})},
                                                     protocol=2))
    with pytest.raises(UserError, match=r"\(__builtin__\.frozenset\) and was not loaded"):
        datasets.load("cifar10", "test", tmp_path)


@pytest.mark.parametrize("content,message", [
    (b"not a pickle at all", "is truncated or not a python pickle"),
    (pickle.dumps({"labels": [1, 2]}), "is not a CIFAR python batch (a dict with keys data, labels)"),
    (pickle.dumps({"data": np.zeros((2, 5), np.uint8), "labels": [1, 2]}), "does not hold 3x32x32 uint8 images"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2, 3]}), "holds 2 images but 3 labels"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 10]}), "labels outside [0, 9]"),
])
def test_malformed_cifar_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(content)
    with pytest.raises(UserError) as info:
        datasets.load("cifar10", "test", tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_mnist_pickle_goes_through_the_same_unpickler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    fake = tmp_path / "mnist.pkl.gz"
    with gzip.open(fake, "wb") as fh:
        pickle.dump(_Payload(marker), fh)
    monkeypatch.setenv("ROBUSTLOSS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "mnist_pickle_path", lambda: fake)
    with pytest.raises(UserError, match="MNIST file .* holds objects other than plain arrays"):
        datasets.load("mnist", "test")
    assert not marker.exists() and not (tmp_path / "cache" / "mnist.npz").exists()


# ============================================================================ 2. bad values
TRAIN_BAD = [
    (("--lr", "inf"), "lr must be in (0, inf), got inf"),
    (("--lr", "nan"), "lr must be in (0, inf), got nan"),
    (("--weight-decay", "inf"), "weight_decay must be in [0, inf), got inf"),
    (("--lr-gamma", "nan"), "lr_gamma must be in (0, 1], got nan"),
    (("--lr-gamma", "-1"), "lr_gamma must be in (0, 1], got -1.0"),
    (("--lr-gamma", "0"), "lr_gamma must be in (0, 1]"),
    (("--milestones", "-5", "0"), "each lr milestone must be an integer >= 1, got -5"),
    (("--milestones", "5", "5"), "lr_milestones must be strictly increasing epochs >= 1, got [5, 5]"),
    (("--milestones", "8", "3"), "strictly increasing"),
    (("--feature-dim", "0"), "feature_dim must be an integer >= 1, got 0"),
    (("-M", "feature_dim=-3"), "feature_dim must be an integer >= 1, got -3"),
    (("-M", "feature_dim=true"), "option feature_dim='true': expected an integer"),
    (("--model", "resnet", "-M", "n=0"), "n (ResNet depth 6n+2) must be an integer >= 1, got 0"),
    (("--model", "resnet", "-M", "width=0"), "width must be an integer >= 1, got 0"),
    (("--seed", str(2**70)), "seed must be an integer in [0, 2**63 - 1]"),
    (("--seed", str(2**63)), "seed must be an integer in [0, 2**63 - 1]"),
    (("--seed", "-1"), "seed must be an integer in [0, 2**63 - 1]"),
    (("--epochs", "0"), "epochs must be an integer >= 1, got 0"),
    (("--batch-size", "0"), "batch_size must be an integer >= 1, got 0"),
    (("--train-limit", "0"), "train_limit must be an integer >= 1, got 0"),
    (("--at", "pgd", "--at-eps", "inf"), "adversarial eps must be in [0, inf)"),
    (("--resume", "--force"), "argument --force: not allowed with argument --resume"),
    (("--out", ""), "argument --out: must not be empty"),
    (("--data-dir", " "), "argument --data-dir: must not be empty"),
]


@pytest.mark.parametrize("extra,message", TRAIN_BAD, ids=[" ".join(a) for a, _ in TRAIN_BAD])
def test_train_refuses_bad_values(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  extra: tuple[str, ...], message: str) -> None:
    monkeypatch.chdir(tmp_path)  # `--out ''` would otherwise mean the current folder
    out = tmp_path / "run"
    argv = [*QUICK, *extra] if "--out" in extra else [*QUICK, *extra, "--out", str(out)]
    code, _, err = run_cli(capsys, "train", *argv)
    _one_line_exit_2(code, err, message)
    assert list(tmp_path.iterdir()) == [], "a refused command creates nothing"


def test_seed_bounds_are_what_torch_accepts() -> None:
    assert check_seed("seed", 2**63 - 1) == 2**63 - 1
    config = TrainConfig(dataset="synthetic", seed=2**63 - 1)
    build_classifier(config)  # torch.manual_seed takes it
    for bad in (2**63, -1, True, 1.5, "3", math.inf):
        with pytest.raises(UserError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\]"):
            TrainConfig(dataset="synthetic", seed=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes,message", [
    ({"epochs": True}, "epochs must be an integer >= 1, got True"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1"),
    ({"batch_size": "64"}, "batch_size must be an integer >= 1, got '64'"),
    ({"lr_milestones": "5"}, "lr_milestones must be a list of epochs"),
    ({"lr_milestones": [True]}, "each lr milestone must be an integer >= 1, got True"),
    ({"momentum": 1.0}, "momentum must be in [0, 1)"),
    ({"augment": "yes"}, "augment must be true, false or null"),
    ({"model_options": "ab"}, "the options of model 'lenet5' must be a mapping"),
    ({"model_options": {"feature_dim": True}}, "option feature_dim=True: expected an integer"),
    ({"objective": "mmc", "objective_options": {"c_mm": True}}, "option c_mm=True: expected a number"),
    ({"model": ["lenet5"]}, "model must be a name"),
])
def test_config_validation_refuses_wrong_types(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as info:
        TrainConfig(dataset="synthetic", **changes)
    assert message in str(info.value)


def test_config_from_dict_refuses_malformed_entries() -> None:
    good = TrainConfig(dataset="synthetic").to_dict()
    assert TrainConfig.from_dict(json.loads(json.dumps(good))).to_dict() == good
    with pytest.raises(UserError, match="must be a JSON object, got list"):
        TrainConfig.from_dict([])  # type: ignore[arg-type]
    with pytest.raises(UserError, match="unknown config keys: colour; valid keys: dataset, model"):
        TrainConfig.from_dict({**good, "colour": 1})
    with pytest.raises(UserError, match="'adversarial' must be an object or null"):
        TrainConfig.from_dict({**good, "adversarial": "pgd"})
    with pytest.raises(UserError, match="unknown adversarial config keys: strength"):
        TrainConfig.from_dict({**good, "adversarial": {"strength": 1}})
    with pytest.raises(UserError, match="adversarial targeted must be true or false"):
        TrainConfig.from_dict({**good, "adversarial": {"targeted": "no"}})


def test_backbones_validate_their_options_in_python_too() -> None:
    for name, options, message in [("resnet", {"width": 0}, "width must be"), ("resnet", {"n": -1}, "n (ResNet"),
                                   ("lenet5", {"feature_dim": 0}, "feature_dim must"),
                                   ("cnn3", {"feature_dim": 2.5}, "expected an integer")]:
        with pytest.raises(UserError) as info:
            build_backbone(name, 1, 28, options)
        assert message in str(info.value)


@pytest.mark.parametrize("raw,default,annotation,expected", [
    ("10", 1, "int", 10), (10.0, 1, "int", 10), (np.int64(7), 1, "int", 7),
    ("0.5", 0.1, "float", 0.5), (3, 0.1, "float", 3.0),
    ("YES", False, "bool", True), ("off", True, "bool", False), (False, True, "bool", False),
    ("-1:1", (0.0, 1.0), "tuple[float, float]", (-1.0, 1.0)), ([-1, 2.5], (0.0, 1.0), "", (-1.0, 2.5)),
    ("none", None, "float | None", None), (None, None, "float | None", None), ("0.1", None, "float | None", 0.1),
    ("linf", "l2", "str", "linf"),
])
def test_coerce_accepts_documented_forms(raw: Any, default: Any, annotation: str, expected: Any) -> None:
    got = coerce("k", raw, default, annotation)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("raw,default,annotation,message", [
    ("true", 1, "int", "option k='true': expected an integer"),
    (True, 1, "int", "option k=True: expected an integer"),
    (2.5, 1, "int", "expected an integer"),
    (math.nan, 1, "int", "expected an integer"),
    (None, 1, "int", "expected an integer"),
    ("true", 0.1, "float", "option k='true': expected a number"),
    (True, 0.1, "float", "option k=True: expected a number"),
    (1, False, "bool", "option k=1: expected true or false"),
    ("maybe", False, "bool", "expected true or false"),
    (3, "linf", "str", "option k=3: expected a string"),
    ("x", (0.0, 1.0), "tuple[float, float]", "expected 2 numbers separated by ':' (e.g. k=-1:1"),
    ("0:1:2", (0.0, 1.0), "tuple[float, float]", "expected 2 numbers"),
    ([0, True], (0.0, 1.0), "tuple[float, float]", "expected 2 numbers"),
    (10**400, 0.1, "float", "too large for a float"),
])
def test_coerce_refuses_wrong_types(raw: Any, default: Any, annotation: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        coerce("k", raw, default, annotation)
    assert message in str(info.value)


def test_tuple_options_reach_the_attack() -> None:
    model = torch.nn.Linear(4, 3)
    attack = ATTACKS.build("fgsm", {"eps": "0.1", "bounds": "-1:1"}, model=model)
    assert attack.bounds == (-1.0, 1.0)
    assert parse_spec("fgsm:eps=0.1,bounds=-1:1").params == {"eps": "0.1", "bounds": "-1:1"}


@pytest.mark.parametrize("extra,message", [
    (("--attack", "fgsm:eps=0.1,bounds=x"), "option bounds='x': expected 2 numbers separated by ':'"),
    (("--attack", "pgd:eps=0.1,steps=true"), "option steps='true': expected an integer"),
    (("--attack", "fgsm:eps=true"), "option eps='true': expected a number"),
    (("--attack", "fgsm:eps=0.1,targeted=2"), "option targeted='2': expected true or false"),
    (("--seed", str(2**70)), "argument --seed: must be an integer in [0, 2**63 - 1]"),
    (("--n", "0"), "argument --n/--num-points: must be an integer >= 1, got 0"),
    (("--batch-size", "-3"), "argument --batch-size: must be an integer >= 1, got -3"),
    (("--name", ""), "argument --name: must not be empty"),
])
def test_evaluate_refuses_bad_values(capsys: pytest.CaptureFixture[str], run_dir: Path, extra: tuple[str, ...],
                                     message: str) -> None:
    before = _tree(run_dir)
    code, _, err = run_cli(capsys, "evaluate", str(run_dir), "--n", "5", "--no-progress", "--device", "cpu", *extra)
    _one_line_exit_2(code, err, message)
    assert _tree(run_dir) == before


def test_empty_paths_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for argv, message in [(("evaluate", ""), "argument RUN_DIR: must not be empty"),
                          (("reproduce", "mnist-quick", "--out", ""), "argument --out: must not be empty"),
                          (("reproduce", "mnist-quick", "--n", "0"), "argument --n: must be an integer >= 1")]:
        code, _, err = run_cli(capsys, *argv)
        _one_line_exit_2(code, err, message)
    assert list(tmp_path.iterdir()) == []


# ============================================================================ 3. suite files and strict JSON
def _suite(tmp_path: Path, content: object) -> str:
    path = tmp_path / "suite.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


PGD = {"label": "a", "attack": "pgd", "params": {"eps": 0.1, "steps": 2}}
SUITE_BAD = [
    ("non-utf8", b"\xff\xfe[]", "is not UTF-8 text (byte 0"),
    ("malformed", b"[{", "is not valid JSON: Expecting property name enclosed in double quotes (line 1, column 3)"),
    ("Infinity", b'[{"label": "a", "attack": "pgd", "params": {"eps": 0.1, "steps": Infinity}}]',
     "holds Infinity, which JSON does not allow"),
    ("NaN", b'[{"label": "a", "attack": "pgd", "params": {"eps": NaN, "steps": 2}}]', "holds NaN"),
    ("-Infinity", b'[{"label": "a", "attack": "pgd", "params": {"eps": -Infinity, "steps": 2}}]',
     "holds -Infinity"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "is nested too deeply to read"),
    ("object", {"label": "a"}, "must hold a JSON array, got a JSON object"),
    ("null", None, "must hold a JSON array, got a JSON null"),
    ("empty", [], "holds no attacks"),
    ("params string", [{**PGD, "params": "ab"}], "entry 1: params of 'a' must be an object"),
    ("entry string", ["pgd"], "entry 1: expected an object with keys label, attack, params"),
    ("unknown key", [{**PGD, "eps": 0.1}], "entry 1: unknown key(s) eps; valid keys: label, attack, params"),
    ("no attack", [{"label": "a"}], "entry 1: missing key(s) attack"),
    ("attack list", [{"label": "a", "attack": ["pgd"]}], "attack of 'a' must be a name"),
    ("unknown attack", [{"label": "a", "attack": "zoo"}], "unknown attack 'zoo'; valid choices:"),
    ("steps true", [{**PGD, "params": {"eps": 0.1, "steps": True}}], "entry 1: option steps=True: expected an integer"),
    ("eps true", [{**PGD, "params": {"eps": True, "steps": 2}}], "option eps=True: expected a number"),
    ("eps string", [{**PGD, "params": {"eps": "x", "steps": 2}}], "option eps='x': expected a number"),
    ("unknown option", [{**PGD, "params": {"eps": 0.1, "steps": 2, "stesp": 3}}], "has no option 'stesp'"),
    ("long label", [{**PGD, "label": "x" * (MAX_LABEL + 1)}], f"must have 1 to {MAX_LABEL} characters, got 201"),
    ("empty label", [{**PGD, "label": ""}], "must have 1 to 200 characters, got 0"),
    ("newline label", [{**PGD, "label": "a\nb"}], "must be printable text on one line"),
    ("surrogate label", b'[{"label": "\\ud800", "attack": "fgsm"}]', "must be printable text on one line"),
    ("number label", [{**PGD, "label": 3}], "an attack label must be a string, got 3"),
    ("duplicate label", [PGD, PGD], "the label 'a' is used twice"),
]


@pytest.mark.parametrize("content,message", [c[1:] for c in SUITE_BAD], ids=[c[0] for c in SUITE_BAD])
def test_suite_files_are_checked(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(UserError) as info:
        load_suite(_suite(tmp_path, content))
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_valid_suite_file_loads(tmp_path: Path) -> None:
    content = "\ufeff" + json.dumps([PGD, {"label": "b", "attack": "fgsm", "params": {"eps": 0.2, "bounds": [-1, 1]}},
                                     {"label": "c", "attack": "fgsm"}])
    path = tmp_path / "suite.json"
    path.write_text(content, encoding="utf-8")  # with a byte-order mark, as some editors write
    assert load_suite(str(path)) == [AttackSpec("a", "pgd", {"eps": 0.1, "steps": 2}),
                                     AttackSpec("b", "fgsm", {"eps": 0.2, "bounds": [-1, 1]}),
                                     AttackSpec("c", "fgsm", {})]


def test_bad_suite_file_from_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, run_dir: Path) -> None:
    before = _tree(run_dir)
    for content, message in [(b'[{"label": "a", "attack": "pgd", "params": {"eps": 0.1, "steps": NaN}}]', "holds NaN"),
                             (b"[" * 100_000, "nested too deeply"), ([], "holds no attacks")]:
        code, _, err = run_cli(capsys, "evaluate", str(run_dir), "--suite", _suite(tmp_path, content),
                               "--no-progress", "--device", "cpu")
        _one_line_exit_2(code, err, message)
    code, _, err = run_cli(capsys, "evaluate", str(run_dir), "--suite", str(tmp_path / "missing.json"))
    _one_line_exit_2(code, err, "cannot read suite file")
    assert _tree(run_dir) == before


def test_read_json_contract(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"a": [1, 2.5, "x", null, true]}')
    assert read_json(path, "run config") == {"a": [1, 2.5, "x", None, True]}
    for content, kind, message in [("[1]", dict, "run config .* must hold a JSON object, got a JSON array"),
                                   ('"x"', dict, "got a JSON string"), ("1e999", list, "got a JSON number"),
                                   ('{"lr": NaN}', dict, "holds NaN"), ("", dict, "is not valid JSON")]:
        path.write_text(content)
        with pytest.raises(UserError, match=message):
            read_json(path, "run config", kind)
    with pytest.raises(UserError, match="cannot read run config .*: No such file or directory"):
        read_json(tmp_path / "nope.json", "run config")


# ============================================================================ 4. checkpoints
def _checkpoint_with(tmp_path: Path, state: dict[str, Any]) -> Path:
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)
    return path


def test_checkpoint_with_a_pickle_payload_says_so_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _checkpoint_with(tmp_path, {"model": _Payload(marker), "config": {}})
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "holds objects that are not plain tensors (io.open) and was not loaded" in message
    assert "truncated" not in message and "\n" not in message
    assert not marker.exists()


def test_checkpoint_whose_model_is_not_a_state_dict(tmp_path: Path) -> None:
    for model, kind in [([1, 2], "list"), ({"w": 1.0}, "dict"), (torch.zeros(3), "Tensor")]:
        path = _checkpoint_with(tmp_path, {"model": model, "config": {}})
        with pytest.raises(UserError, match=f"its 'model' entry is not a state dict .* but {kind}"):
            load_checkpoint(path)
    path = _checkpoint_with(tmp_path, {"model": {"w": torch.zeros(2)}, "config": [1]})
    with pytest.raises(UserError, match="its 'config' entry is not a dict"):
        load_checkpoint(path)


def test_foreign_checkpoint_in_a_run_from_the_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  run_dir: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    state = load_checkpoint(run / "checkpoint.pt")
    marker = tmp_path / "pwned"
    torch.save({**state, "model": _Payload(marker)}, run / "checkpoint.pt")
    before = _tree(run)
    code, _, err = run_cli(capsys, "evaluate", str(run), "--attack", "fgsm:eps=0.1", "--n", "5", "--no-progress",
                           "--device", "cpu")
    _one_line_exit_2(code, err, "holds objects that are not plain tensors")
    assert not marker.exists() and _tree(run) == before


# ============================================================================ 5. I/O errors are one line
def test_out_under_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("keep")
    code, _, err = run_cli(capsys, "train", *QUICK, "--out", str(tmp_path / "somefile" / "run"))
    _one_line_exit_2(code, err, f"robustloss: error: Not a directory: {tmp_path / 'somefile' / 'run'}")
    assert _tree(tmp_path) == {"somefile": b"keep"}


def test_eval_folder_is_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, run_dir: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "eval").write_text("not a folder")
    before = _tree(run)
    code, _, err = run_cli(capsys, "evaluate", str(run), "--attack", "fgsm:eps=0.1", "--n", "5", "--no-progress",
                           "--device", "cpu")
    _one_line_exit_2(code, err, f"robustloss: error: {run / 'eval'} exists and is not a folder")
    assert _tree(run) == before


def test_disk_full_while_saving_a_checkpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk surfaces as the OS's error on one line, not torch's zip-writer RuntimeError."""

    def full(self: Path, data: Any) -> int:
        with open(self, "wb") as fh:
            fh.write(bytes(data)[:10])  # a partial write, then the device is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *QUICK, "--out", str(out))
    _one_line_exit_2(code, err, "robustloss: error: No space left on device")
    assert not (out / "checkpoint.pt").exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


# ============================================================================ 6. atomic writes
def test_failing_writer_leaves_old_file_and_no_tmp(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def failing(tmp: Path) -> None:
        tmp.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    def interrupted(tmp: Path) -> None:
        tmp.write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(OSError):
        atomic_write(target, failing)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "no stray .tmp"
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_gives_normal_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}})
    finally:
        os.umask(umask)
    for name in ("a.txt", "c.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert load_checkpoint(tmp_path / "c.pt") == {"model": {}, "config": {}}
