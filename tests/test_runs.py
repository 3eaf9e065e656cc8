"""Run folders: the lock, result names kept inside RUN/eval, nothing left by a failed start, thread counts,
warnings for unusable checkpoints, transfer from a run folder, and the Python API's boundary checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustloss.attacks import FGSM, PGD, SPSA
from robustloss.classifier import Classifier
from robustloss.errors import UserError
from robustloss.runs import load_run, run_lock, train_run
from robustloss.training import TrainConfig
from robustloss.training.checkpoint import load_checkpoint, save_checkpoint

from conftest import run_cli

SRC = Path(__file__).resolve().parents[1] / "src"


def _config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {"dataset": "synthetic", "model": "cnn3", "epochs": 1, "batch_size": 64, "seed": 0,
                               "lr": 0.05}
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    train_run(_config(), out, progress=False, device="cpu")
    return out


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / name))


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


# ------------------------------------------------------------------------------------------------ the lock
def test_a_second_writer_is_refused_naming_the_holder(finished: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Another process holds the run folder: `train --force` and `evaluate` are refused, nothing is changed."""
    run = _copy(finished, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom robustloss.runs import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = _tree(run)
        code, _, err = run_cli(capsys, "train", "--dataset", "synthetic", "--model", "cnn3", "--epochs", "1",
                               "--out", str(run), "--force", "--no-progress", "--device", "cpu")
        assert code == 2 and f"PID {holder.pid}" in err and len(err.strip().splitlines()) == 1, err
        code, _, err = run_cli(capsys, "evaluate", str(run), "--attack", "fgsm:eps=0.1", "--n", "5",
                               "--no-progress", "--device", "cpu")
        assert code == 2 and f"PID {holder.pid}" in err, err
        assert _tree(run) == before
    finally:
        holder.kill()
        holder.wait()
    # a killed holder leaves no stale lock: the kernel released it
    with run_lock(run):
        pass


def test_lock_is_exclusive_within_one_process(finished: Path, tmp_path: Path) -> None:
    run = _copy(finished, tmp_path)
    with run_lock(run):
        with pytest.raises(UserError, match=f"PID {os.getpid()}"):
            train_run(_config(), run, force=True, progress=False, device="cpu")


# ------------------------------------------------------------------------------------ result names stay inside
@pytest.mark.parametrize("name", ["../config", "../../x", "/tmp/abs", ".hidden", "a/b", "", "x" * 101])
def test_result_names_stay_inside_eval(name: str, finished: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy(finished, tmp_path)
    before = _tree(tmp_path)
    code, _, err = run_cli(capsys, "evaluate", str(run), "--attack", "fgsm:eps=0.1", "--name", name, "--n", "5",
                           "--no-progress", "--device", "cpu")
    assert code == 2 and ("result name" in err or "must not be empty" in err), err
    assert len(err.strip().splitlines()) == 1, err
    assert _tree(tmp_path) == before


# ----------------------------------------------------------------------------------------------- leftovers
def test_failed_start_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c10"
    code, _, err = run_cli(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "nonexistent"),
                           "--out", str(out), "--no-progress", "--device", "cpu")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_divergence_in_the_first_epoch_does_not_block_the_corrected_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--model", "cnn3", "--epochs", "1", "--out", str(out),
            "--no-progress", "--device", "cpu"]
    code, _, err = run_cli(capsys, *args, "--lr", "1e30")
    assert code == 1 and "no checkpoint was written" in err and "epoch 0 checkpoint" not in err, err
    assert "1e+30" in err                                         # the lr that failed, not null
    assert not (out / "checkpoint.pt").exists()
    code, _, err = run_cli(capsys, *args, "--lr", "0.05")         # no --force needed: nothing was trained
    assert code == 0, err
    assert load_checkpoint(out / "checkpoint.pt")["complete"]


def test_reproduce_rejects_bad_n_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    code, _, err = run_cli(capsys, "reproduce", "mnist-quick", "--n", "0", "--out", str(tmp_path / "r"))
    assert code == 2 and time.perf_counter() - start < 5, err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------- thread counts
def test_thread_count_is_stored_and_a_change_warned_on_resume(finished: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy(finished, tmp_path)
    assert json.loads((run / "runtime.json").read_text())["threads"] == torch.get_num_threads()
    (run / "runtime.json").write_text(json.dumps({"threads": torch.get_num_threads() + 3}))
    capsys.readouterr()
    train_run(_config(), run, resume=True, progress=False, device="cpu")
    err = capsys.readouterr().err
    assert f"trained with {torch.get_num_threads() + 3} threads" in err and "--threads" in err
    assert json.loads((run / "runtime.json").read_text())["threads"] == torch.get_num_threads()


# ------------------------------------------------------------------------------------- unusable checkpoints
def test_evaluating_an_unfinished_or_nan_run_warns(finished: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy(finished, tmp_path)
    state = load_checkpoint(run / "checkpoint.pt")
    state["complete"] = False
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    save_checkpoint(run / "checkpoint.pt", state)
    code, _, err = run_cli(capsys, "evaluate", str(run), "--attack", "fgsm:eps=0.1", "--n", "5", "--no-progress",
                           "--device", "cpu")
    assert code == 0, err
    assert "is unfinished" in err and "non-finite weights" in err


# ------------------------------------------------------------------------------------- transfer from a folder
def test_transfer_attack_from_a_run_folder(finished: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    target = _copy(finished, tmp_path, "target")
    source = tmp_path / "source"
    train_run(_config(seed=1), source, progress=False, device="cpu")
    spec = f"transfer:substitute_model={source},attack=pgd,eps=0.3,steps=5"
    code, out, err = run_cli(capsys, "evaluate", str(target), "--attack", spec, "--n", "40", "--no-progress",
                             "--device", "cpu")
    assert code == 0, err
    data = json.loads((target / "eval" / "custom.json").read_text())
    transferred = data["attacks"][0]["robust_accuracy"]
    # the same examples crafted by hand on the loaded source model
    from robustloss import datasets
    from robustloss.attacks import TransferAttack
    from robustloss.classifier import predict

    x, y = datasets.load("synthetic", "test")
    x, y = x[:40], y[:40]
    tgt, src = load_run(target), load_run(source)
    clean = predict(tgt, x, 40) == y
    attack = TransferAttack(tgt, src, "pgd", eps=0.3, steps=5, seed=0)
    robust = clean.clone()
    idx = clean.nonzero().squeeze(1)
    # the engine seeds every example from the attack's seed and its index
    from robustloss.evaluation.engine import example_seeds

    adv = attack.run(x[idx], y[idx], example_seeds=example_seeds(0, idx)).adversarial
    robust[idx] = predict(tgt, adv, 40) == y[idx]
    by_hand = float(robust.float().mean())
    assert transferred == pytest.approx(by_hand)
    code, _, err = run_cli(capsys, "evaluate", str(target), "--attack",
                           f"transfer:substitute_model={tmp_path / 'missing'},eps=0.3", "--n", "5", "--no-progress",
                           "--device", "cpu")
    assert code == 2 and "not a run folder" in err, err


# ------------------------------------------------------------------------------------- Python API boundary
@pytest.fixture(scope="module")
def model(finished: Path) -> Classifier:
    return load_run(finished)


def _xy(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    from robustloss import datasets

    x, y = datasets.load("synthetic", "test")
    return x[:n], y[:n]


@pytest.mark.parametrize("case, message", [
    ("label-too-large", r"labels must be class indices in \[0, 9\]"),
    ("label-negative", r"labels must be class indices in \[0, 9\]"),
    ("target-too-large", r"targets must be class indices in \[0, 9\]"),
    ("nan-input", "NaN or infinite"),
    ("float-labels", "integer tensor of class indices"),
    ("float64-input", "torch.float64 but the model computes in torch.float32"),
    ("float16-input", "torch.float16 but the model computes in torch.float32"),
    ("float-targets", "targets must be an integer tensor"),
])
def test_api_boundary_errors(case: str, message: str, model: Classifier) -> None:
    x, y = _xy()
    targeted = case.startswith("target") or case == "float-targets"
    attack = PGD(model, 0.1, 2, targeted=targeted)
    targets = None
    if case == "label-too-large":
        y = y.clone()
        y[0] = 10
    elif case == "label-negative":
        y = y.clone()
        y[0] = -1
    elif case == "target-too-large":
        targets = (y + 1) % 10
        targets[0] = 12
    elif case == "nan-input":
        x = x.clone()
        x[0, 0, 0, 0] = float("nan")
    elif case == "float-labels":
        y = y.float() + 0.5
    elif case == "float64-input":
        x = x.double()
    elif case == "float16-input":
        x = x.half()
    elif case == "float-targets":
        targets = ((y + 1) % 10).float()
    with pytest.raises(UserError, match=message) as info:
        attack(x, y, targets)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("eps", ["0.3", None, True, float("nan"), float("inf"), -0.1])
def test_bad_eps_values_are_user_errors(eps: object, model: Classifier) -> None:
    for build in (lambda: FGSM(model, eps),  # type: ignore[arg-type]
                  lambda: PGD(model, eps, 2),  # type: ignore[arg-type]
                  lambda: SPSA(model, eps)):  # type: ignore[arg-type]
        with pytest.raises(UserError, match="eps must be"):
            build()


def test_eps_is_required_in_the_python_api(model: Classifier) -> None:
    with pytest.raises(TypeError):
        FGSM(model)  # type: ignore[call-arg]


def test_same_attack_twice_gives_the_same_output(model: Classifier) -> None:
    x, y = _xy(8)
    attack = PGD(model, 0.3, 5, 0.1, random_start=True, targeted=True, seed=4)
    first, second = attack.run(x, y), attack.run(x, y)
    assert torch.equal(first.adversarial, second.adversarial)
    assert torch.equal(first.success, second.success)
