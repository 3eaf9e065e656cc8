"""Speed options: channels-last weights (runtime) and autocast while crafting AT examples (``TrainConfig.amp``).

Tolerances were measured on this machine (AMD EPYC, AVX2, torch 2.13, 1 thread); the
measured values are noted beside each threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from robustloss import UserError, datasets
from robustloss.attacks import PGD
from robustloss.classifier import Classifier
from robustloss.cli import build_parser
from robustloss.device import apply_channels_last, autocast, resolve_channels_last
from robustloss.reproduce.framework import run_key
from robustloss.runs import load_run, train_run
from robustloss.training import AdversarialConfig, TrainConfig, Trainer
from robustloss.training.adversarial import TrainingAdversary
from robustloss.training.checkpoint import load_checkpoint, save_checkpoint
from robustloss.training.trainer import build_classifier

from conftest import run_cli

CPU = torch.device("cpu")


def _model(objective: str = "sce", model: str = "lenet5", **model_options: object) -> Classifier:
    return build_classifier(TrainConfig(model=model, objective=objective, model_options=dict(model_options))).eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, y = datasets.load("mnist", "train")
    xt, yt = datasets.load("mnist", "test")
    return x[:3000], y[:3000], xt[:200], yt[:200]


@pytest.fixture(scope="module")
def trained(data: tuple[torch.Tensor, ...], tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """LeNet-5 + SCE, one epoch of 3000 MNIST images at batch 32, lr 0.05, contiguous weights."""
    x, y, _, _ = data
    t = Trainer(TrainConfig(epochs=1, lr=0.05, batch_size=32), tmp_path_factory.mktemp("t"), device="cpu",
                progress=False, channels_last=False)
    t.train_epoch(0, x, y, augment=False)
    return t.model.eval()


# ---------------------------------------------------------------------------------------------- channels_last
@pytest.mark.parametrize("objective,model,options", [("sce", "lenet5", {}), ("mmc", "lenet5", {}),
                                                     ("mmc", "cnn3", {}), ("sce", "resnet", {"n": 1})])
def test_channels_last_logits_and_input_gradients_match(objective: str, model: str, options: dict[str, object],
                                                        data: tuple[torch.Tensor, ...]) -> None:
    x = data[2][:64]
    a, b = _model(objective, model, **options), _model(objective, model, **options)
    apply_channels_last(b, True)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in b.parameters() if p.dim() == 4)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    la, lb = a(xa), b(xb)
    (ga,) = torch.autograd.grad(la.logsumexp(1).sum(), xa)
    (gb,) = torch.autograd.grad(lb.logsumexp(1).sum(), xb)
    la, lb = la.detach(), lb.detach()
    scale = float(la.abs().max())
    # measured max |diff|: SCE 2.6e-8 (logits ~0.1), MMC 7.6e-6 / 1.1e-5 (logits ~51): float rounding
    assert float((la - lb).abs().max()) <= 1e-5 * (1 + scale)
    if objective == "sce":
        assert float((la - lb).abs().max()) <= 1e-5   # the bound, absolute
    # measured relative input-gradient difference: 3e-7 .. 7e-6
    assert float((ga - gb).abs().max()) <= 1e-4 * float(ga.abs().max())


def test_channels_last_default_and_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    lenet, mlp = _model(), nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    for capability, on in (("AVX512", True), ("AVX2", False), ("DEFAULT", False)):   # device.py says why
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert resolve_channels_last(None, CPU, lenet) is on
        assert resolve_channels_last(None, CPU, mlp) is False                    # nothing to speed up
        assert resolve_channels_last(None, torch.device("cuda"), lenet) is False  # not measured on a GPU
    monkeypatch.undo()
    assert resolve_channels_last(True, torch.device("cuda"), lenet) is True
    assert resolve_channels_last(False, CPU, lenet) is False
    with pytest.raises(UserError, match="channels_last"):
        resolve_channels_last("yes", CPU, lenet)  # type: ignore[arg-type]
    params = list(lenet.parameters())
    apply_channels_last(lenet, True)
    assert [id(p) for p in lenet.parameters()] == [id(p) for p in params]     # an optimizer keeps working
    conv = lenet.backbone.conv[3].weight   # 16x6x5x5 (the first, 6x1x5x5, is both layouts at once)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    fresh = _model()
    fresh.load_state_dict(lenet.state_dict())                                  # either layout loads into either
    assert all(torch.equal(v, lenet.state_dict()[k]) for k, v in fresh.state_dict().items())
    apply_channels_last(lenet, False)
    assert conv.is_contiguous()


def test_channels_last_training_matches_contiguous(data: tuple[torch.Tensor, ...], tmp_path: Path) -> None:
    x, y, xt, yt = data
    models = []
    for layout in (False, True):
        t = Trainer(TrainConfig(epochs=1, lr=0.05, batch_size=64), tmp_path / str(layout), device="cpu",
                    progress=False, channels_last=layout)
        assert t.channels_last is layout
        t.train_epoch(0, x[:512], y[:512], augment=False)
        models.append(t.model.eval())
    a, b = (m.state_dict() for m in models)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    with torch.no_grad():
        disagree = float((models[0](xt).argmax(1) != models[1](xt).argmax(1)).float().mean())
    print(f"max weight difference {diff:.1e}, predictions differing on {disagree:.3f} of 200 test points")
    # measured: 2.2e-8 after 31 SGD steps (2000 images), 7.5e-9 after 8 (512 images); predictions equal
    assert diff <= 1e-4
    assert disagree <= 0.01


# ----------------------------------------------------------------------------------------------------- amp
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_attack_agrees_with_fp32(amp: str, trained: Classifier, data: tuple[torch.Tensor, ...]) -> None:
    _, _, xt, yt = data
    ref = PGD(trained, 0.1, 10, 0.01, seed=0).run(xt, yt)
    pgd = PGD(trained, 0.1, 10, 0.01, seed=0)
    pgd.amp = amp
    seen: list[torch.dtype] = []
    loss_fn = pgd.loss_fn
    pgd.loss_fn = lambda out, labels, targets: (seen.append(out.logits.dtype), loss_fn(out, labels, targets))[1]
    res = pgd.run(xt, yt)
    assert seen and set(seen) == {torch.float32}                              # losses computed in fp32
    acc_ref, acc = float((~ref.success).float().mean()), float((~res.success).float().mean())
    diff = float((res.adversarial - ref.adversarial).abs().mean())
    print(f"{amp}: robust acc {acc:.3f} vs fp32 {acc_ref:.3f}, mean |x_adv - x_adv_fp32| {diff:.2e}")
    # measured (200 points): robust accuracy 0.460 (bf16) / 0.455 (fp16) vs 0.455 (fp32); mean |diff|
    # 3.2e-3 (bf16) / 2.2e-3 (fp16), eps 0.1: bf16 rounding flips the sign of some gradient coordinates
    assert abs(acc - acc_ref) <= 0.03
    assert diff <= 0.02
    assert float((res.adversarial - xt).abs().max()) <= 0.1 + 1e-6           # still inside the ball


def test_amp_training_adversary_and_fp32_training_step(trained: Classifier, data: tuple[torch.Tensor, ...]) -> None:
    x, y = data[0][:128], data[1][:128]
    cfg = AdversarialConfig(method="pgd", steps=5, eps=0.1, step_size=0.02)
    batches = {}
    for amp in (None, "bf16"):
        adversary = TrainingAdversary(cfg, trained, amp=amp)
        assert adversary.attack.amp == amp
        adversary.reseed(torch.Generator().manual_seed(1))
        batches[amp] = adversary(x, y)[0]
    with torch.no_grad():
        losses = {k: float(trained.objective.loss(trained.features(v), y)) for k, v in batches.items()}
    print(f"training loss on the crafted batch: fp32 {losses[None]:.4f}, bf16 {losses['bf16']:.4f}")
    # measured: training loss on the crafted batch 0.8317 (fp32) vs 0.8295 (bf16): 0.3 % apart
    assert abs(losses["bf16"] - losses[None]) <= 0.05 * losses[None]
    with autocast(CPU, None):   # fp32: a no-op context
        assert trained(x[:2]).dtype == torch.float32


def test_amp_config_validation_and_run_key() -> None:
    at = AdversarialConfig()
    plain = TrainConfig(adversarial=at)
    assert TrainConfig(adversarial=at, amp=None).to_dict()["amp"] is None
    assert run_key(TrainConfig(adversarial=AdversarialConfig(), amp=None)) == run_key(plain)
    assert run_key(TrainConfig(adversarial=AdversarialConfig(), amp="bf16")) != run_key(plain)
    with pytest.raises(UserError, match="bf16, fp16"):
        TrainConfig(adversarial=at, amp="fp8")
    with pytest.raises(UserError, match="needs adversarial training"):
        TrainConfig(amp="bf16")
    stored = plain.to_dict()
    del stored["amp"]                      # a checkpoint written before the option existed
    assert plain.matches(stored)
    assert not TrainConfig(adversarial=AdversarialConfig(), amp="bf16").matches(stored)
    assert not plain.matches({"epochs": "ten"})


def test_resume_of_a_checkpoint_without_the_amp_key(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, train_limit=256, batch_size=128)
    out = tmp_path / "run"
    train_run(TrainConfig(**{**cfg.to_dict(), "epochs": 1}), out, progress=False, device="cpu")
    state = load_checkpoint(out / "checkpoint.pt")
    for stored in (state["config"], json.loads((out / "config.json").read_text())):
        stored.pop("amp")
    save_checkpoint(out / "checkpoint.pt", state)
    (out / "config.json").write_text(json.dumps(state["config"]))
    load_run(out)                                                   # the old checkpoint still loads
    t = Trainer(TrainConfig(epochs=1, train_limit=256, batch_size=128), out, device="cpu", progress=False)
    assert t.resume() and t.epoch == 1


# ----------------------------------------------------------------------------------------------------- CLI
def test_cli_flags_parse() -> None:
    p = build_parser()
    args = p.parse_args(["train", "--out", "x", "--at", "pgd", "--amp", "bf16", "--no-channels-last"])
    assert args.amp == "bf16" and args.channels_last is False
    args = p.parse_args(["train", "--out", "x"])
    assert args.amp is None and args.channels_last is None
    assert p.parse_args(["evaluate", "RUN", "--channels-last"]).channels_last is True


@pytest.mark.parametrize("extra,message", [(["--at", "pgd", "--amp", "fp8"], "invalid choice: 'fp8'"),
                                           (["--amp", "bf16"], "needs adversarial training")])
def test_cli_bad_amp_is_one_line_exit_2(extra: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "train", "--out", str(tmp_path / "run"), "--device", "cpu", *extra)
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("robustloss: error:")
    assert not (tmp_path / "run").exists()


def test_cli_records_precision_and_layout(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", str(run), "--device", "cpu", "--no-progress", "--epochs", "1",
                           "--train-limit", "256", "--at", "fgsm", "--at-eps", "0.1", "--amp", "bf16",
                           "--channels-last")
    assert code == 0, err
    runtime = json.loads((run / "runtime.json").read_text())
    assert runtime["channels_last"] is True and runtime["crafting_precision"] == "bf16"
    assert runtime["training_precision"] == "fp32"
    assert json.loads((run / "config.json").read_text())["amp"] == "bf16"
    code, _, err = run_cli(capsys, "evaluate", str(run), "--device", "cpu", "--no-progress", "--n", "20",
                           "--attack", "fgsm:eps=0.1", "--no-channels-last")
    assert code == 0, err
    result = json.loads((run / "eval" / "custom.json").read_text())
    assert result["precision"] == "fp32" and result["channels_last"] is False
    assert json.loads((run / "eval" / "custom.robustbench.json").read_text())["precision"] == "fp32"


def test_resume_with_another_layout_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    train_run(TrainConfig(epochs=1, train_limit=128), out, progress=False, device="cpu", channels_last=True)
    assert json.loads((out / "runtime.json").read_text())["channels_last"] is True
    capsys.readouterr()
    train_run(TrainConfig(epochs=2, train_limit=128), tmp_path / "other", progress=False, device="cpu")
    assert "channels_last" not in capsys.readouterr().err               # a fresh run: nothing to warn about
    state = load_checkpoint(out / "checkpoint.pt")
    state["config"]["epochs"], state["complete"] = 2, False   # extend the finished run by one epoch
    save_checkpoint(out / "checkpoint.pt", state)
    (out / "config.json").write_text(json.dumps(state["config"]))
    train_run(TrainConfig(epochs=2, train_limit=128), out, resume=True, progress=False, device="cpu",
              channels_last=False)
    err = capsys.readouterr().err
    assert "trained with channels_last=True and resumes with False" in err and "--channels-last" in err
    assert json.loads((out / "runtime.json").read_text())["channels_last"] is False


@pytest.mark.parametrize("capability,expected", [("AVX512", True), ("AVX2", False)])
def test_training_default_layout_follows_the_cpu(capability: str, expected: bool, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --channels-last/--no-channels-last a run takes the CPU's rule, records it, and trains either way."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    model = train_run(TrainConfig(epochs=1, train_limit=128), tmp_path / "run", progress=False, device="cpu")
    assert json.loads((tmp_path / "run" / "runtime.json").read_text())["channels_last"] is expected
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)   # not the 1-channel conv
    assert conv.is_contiguous(memory_format=torch.channels_last) is expected
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
