"""Training: determinism, exact resume after a kill, atomic checkpoints, divergence, run-folder rules."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustloss import UserError, load_run
from robustloss.runs import train_run
from robustloss.training import AdversarialConfig, TrainConfig, Trainer, TrainingDiverged
from robustloss.training.checkpoint import load_checkpoint

CLI = [sys.executable, "-m", "robustloss.cli"]


def _config(**kw: object) -> TrainConfig:
    base = dict(dataset="mnist", model="lenet5", objective="mmc", epochs=4, batch_size=64, train_limit=4000, seed=3)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _cli_args(cfg: TrainConfig, out: Path) -> list[str]:
    return [*CLI, "train", "--dataset", cfg.dataset, "--model", cfg.model, "--objective", cfg.objective,
            "--epochs", str(cfg.epochs), "--batch-size", str(cfg.batch_size), "--train-limit", str(cfg.train_limit),
            "--seed", str(cfg.seed), "--device", "cpu", "--no-progress", "--out", str(out)]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    cfg = _config(epochs=2)
    a = train_run(cfg, tmp_path / "a", progress=False, device="cpu")
    b = train_run(cfg, tmp_path / "b", progress=False, device="cpu")
    assert _same_weights(a, b)
    c = train_run(_config(epochs=2, seed=4), tmp_path / "c", progress=False, device="cpu")
    assert not _same_weights(a, c)


def test_killed_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    cfg = _config(train_limit=2000)
    delay = float(torch.rand(()) * 0.3)  # kill at some point after the first checkpoint
    # the reference runs in a subprocess too: float results depend on the thread count
    subprocess.run(_cli_args(cfg, tmp_path / "ref"), check=True, capture_output=True)
    reference = load_run(tmp_path / "ref")
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli_args(cfg, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(out / "checkpoint.pt")
    assert 1 <= state["epoch"] <= cfg.epochs
    done = subprocess.run([*_cli_args(cfg, out), "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = load_run(out)
    assert _same_weights(reference, resumed)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(1, cfg.epochs + 1))


def test_checkpoint_contents_and_weights_only_load(tmp_path: Path) -> None:
    train_run(_config(epochs=1), tmp_path / "r", progress=False, device="cpu")
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "config", "epoch", "history", "complete"} <= set(state)
    assert state["config"]["objective_options"] == {"c_mm": 10.0, "half": True}
    assert state["complete"] is True


def test_truncated_and_corrupt_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    cfg = _config(epochs=1)
    train_run(cfg, tmp_path / "r", progress=False, device="cpu")
    ckpt = tmp_path / "r" / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_run(tmp_path / "r")
    ckpt.write_bytes(b"garbage" * 100)
    with pytest.raises(UserError, match="truncated or corrupt"):
        train_run(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")


def test_checkpoint_from_another_configuration(tmp_path: Path) -> None:
    train_run(_config(epochs=1), tmp_path / "a", progress=False, device="cpu")
    train_run(_config(epochs=1, objective="sce"), tmp_path / "b", progress=False, device="cpu")
    (tmp_path / "a" / "checkpoint.pt").write_bytes((tmp_path / "b" / "checkpoint.pt").read_bytes())
    with pytest.raises(UserError, match="another configuration"):
        load_run(tmp_path / "a")
    with pytest.raises(UserError, match="another configuration"):
        train_run(_config(epochs=1), tmp_path / "a", resume=True, progress=False, device="cpu")


def test_output_folder_rules(tmp_path: Path) -> None:
    out = tmp_path / "r"
    train_run(_config(epochs=1), out, progress=False, device="cpu")
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="different run"):
        train_run(_config(epochs=1, objective="sce"), out, progress=False, device="cpu")
    with pytest.raises(UserError, match="--resume"):
        train_run(_config(epochs=1), out, progress=False, device="cpu")
    assert (out / "checkpoint.pt").read_bytes() == before, "refused runs must not touch the folder"
    train_run(_config(epochs=1, objective="sce"), out, force=True, progress=False, device="cpu")
    assert load_checkpoint(out / "checkpoint.pt")["config"]["objective"] == "sce"


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "r"
    cfg = _config(epochs=1)
    train_run(cfg, out, progress=False, device="cpu")
    good = (out / "checkpoint.pt").read_bytes()
    cfg2 = _config(epochs=2)
    (out / "config.json").write_text(json.dumps(cfg2.to_dict()))
    state = load_checkpoint(out / "checkpoint.pt")
    state["config"] = cfg2.to_dict()
    state["complete"] = False
    torch.save(state, out / "checkpoint.pt")
    good = (out / "checkpoint.pt").read_bytes()
    trainer = Trainer(cfg2, out, device="cpu", progress=False, log=lambda _: None)
    trainer.resume()
    with torch.no_grad():
        trainer.model.backbone.dense[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="nan"):
        trainer.fit()
    assert (out / "checkpoint.pt").read_bytes() == good


def test_adversarial_training_uses_own_generator(tmp_path: Path) -> None:
    at = AdversarialConfig(eps=0.1, steps=2, step_size=0.05, targeted=False, mix="half")
    cfg = _config(epochs=1, train_limit=512, adversarial=at)
    a = train_run(cfg, tmp_path / "a", progress=False, device="cpu")
    torch.manual_seed(12345)  # global RNG must not matter
    b = train_run(cfg, tmp_path / "b", progress=False, device="cpu")
    assert _same_weights(a, b)


def test_bad_adversarial_settings() -> None:
    with pytest.raises(UserError):
        _config(adversarial=AdversarialConfig(eps=-0.1))
    with pytest.raises(UserError, match="valid choices"):
        _config(adversarial=AdversarialConfig(mix="both"))
    with pytest.raises(UserError, match="valid choices"):
        _config(adversarial=AdversarialConfig(method="cw"))
