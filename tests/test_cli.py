"""The command line: help, one-line errors with exit code 2, nothing overwritten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli as _run


BAD = [
    (("train", "--dataset", "imagenet", "--out", "{tmp}/x"), "unknown dataset 'imagenet'; valid choices: cifar10"),
    (("train", "--model", "vgg", "--out", "{tmp}/x"), "unknown model 'vgg'; valid choices: cnn3, lenet5, resnet"),
    (("train", "--objective", "foo", "--out", "{tmp}/x"), "unknown objective 'foo'; valid choices:"),
    (("train", "--objective", "mmc", "-O", "c_mm=0", "--out", "{tmp}/x"), "c_mm must be in (0, inf)"),
    (("train", "--epochs", "0", "--out", "{tmp}/x"), "epochs must be an integer >= 1"),
    (("train", "--objective", "hmmc", "--out", "{tmp}/x"), "objective 'hmmc' needs a class tree"),
    (("train", "--objective", "hmmc", "-O", "tree=1,2,3", "--out", "{tmp}/x"), "the class tree has 3 entries"),
    (("train", "--objective", "pc", "-O", "xi=1.5", "--out", "{tmp}/x"), "xi must be in (0, 1]"),
    (("train", "--objective", "isce", "-O", "s=0.5", "--out", "{tmp}/x"), "s must be in [1, inf)"),
    (("train", "--objective", "emc", "-O", "alpha=0", "--out", "{tmp}/x"), "alpha must be in (0, inf)"),
    (("train", "--at", "pgd", "--at-eps", "-1", "--out", "{tmp}/x"), "adversarial eps must be in [0, "),
    pytest.param(("train", "--dataset", "cifar10", "--data-dir", "/nonexistent", "--epochs", "1", "--out", "{tmp}/r"),
                 "data dir /nonexistent does not exist"),
    (("train", "--device", "tpu", "--out", "{tmp}/r"), "unknown device 'tpu'"),
    (("evaluate", "{tmp}"), "is not a run folder"),
    (("reproduce", "table9"), "unknown recipe 'table9'; valid choices: all, cifar10-table1, isce-fig3, isce-fig4"),
    (("list", "metrics"), "invalid choice: 'metrics'"),
    (("train",), "the following arguments are required: --out"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], message: str) -> None:
    monkeypatch.chdir(tmp_path)       # default outputs (e.g. reproduce's results/NAME) would land in tmp_path too
    code, _, err = _run(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [], f"a refused command must not create anything, found {left}"


def test_evaluate_bad_attack_specs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert _run(capsys, "train", "--dataset", "synthetic", "--epochs", "1", "--out", str(run), "--no-progress",
                "--device", "cpu")[0] == 0
    for spec, message in [("pgd:eps=-0.1,steps=2", "eps must be in [0, inf)"),
                          ("pgd:eps=0.1,steps=0", "steps must be an integer >= 1"),
                          ("pgd:eps=0.1", "needs option(s): steps"),
                          ("pgd:eps=0.1,steps=2,norm=l3", "unknown norm 'l3'"),
                          ("pgd:eps=0.1,steps=2,loss=foo", "unknown attack loss 'foo'"),
                          ("zoo:eps=1", "unknown attack 'zoo'")]:
        before = sorted(run.rglob("*"))
        code, _, err = _run(capsys, "evaluate", str(run), "--attack", spec, "--no-progress", "--device", "cpu")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (spec, err)
        # nothing written: not eval/custom.json (where --attack without --name writes) nor anything else
        assert sorted(run.rglob("*")) == before, spec


def test_train_refuses_other_run_and_keeps_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    base = ("train", "--dataset", "synthetic", "--epochs", "1", "--out", str(run), "--no-progress", "--device", "cpu")
    assert _run(capsys, *base)[0] == 0
    before = (run / "checkpoint.pt").read_bytes()
    code, _, err = _run(capsys, *base, "--objective", "mmc")
    assert code == 2 and "holds a different run" in err
    assert (run / "checkpoint.pt").read_bytes() == before
    code, _, err = _run(capsys, *base)
    assert code == 2 and "--resume" in err


def test_help_documents_every_option() -> None:
    out = subprocess.run([sys.executable, "-m", "robustloss.cli", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for option in ("--dataset", "--model", "--objective", "--epochs", "--out", "--resume", "--force", "--device",
                   "--feature-dim", "--at", "--milestones", "(default: 0.01)"):
        assert option in out


def test_entry_point_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "robustloss.cli", "evaluate", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("robustloss: error:") and "Traceback" not in proc.stderr


def test_recipes_are_valid_and_paper_columns_match_suites() -> None:
    from robustloss.evaluation.suite import SUITES
    from robustloss.reproduce.mmc import T1_MODELS, T1_SCALES, paper_suite
    from robustloss.reproduce.papers.mmc_paper import MMC_PAPER
    from robustloss.reproduce.papers.pc_paper import PC_PAPER

    labels = {spec.label for spec in SUITES["mnist-pc-table1"]}   # every gray-scale PC paper column is one of ours
    for row, columns in PC_PAPER.table("P4").items():
        if not row.startswith(("CIFAR-10 ", "SVHN ")):   # the colour datasets use other eps (0.04/0.12/0.2)
            assert set(columns) - {"clean"} <= labels, row
    for scale, s in T1_SCALES.items():   # every Table 1 column is measured at every scale, every config is valid
        assert set(MMC_PAPER.table("M1")["SCE"]) - {"clean"} <= set(paper_suite(s)), scale
        for row in s.models:
            s.config(*T1_MODELS[row]).validate()


@pytest.mark.parametrize("kind", ["objectives", "models", "attacks", "suites", "recipes"])
def test_list_shows_every_entry_with_its_options(capsys: pytest.CaptureFixture[str], kind: str) -> None:
    from robustloss.attacks import ATTACKS
    from robustloss.evaluation.suite import SUITES
    from robustloss.models import MODELS
    from robustloss.objectives import OBJECTIVES
    from robustloss.reproduce import RECIPES

    code, out, err = _run(capsys, "list", kind)
    assert code == 0 and err == ""
    names = {"objectives": OBJECTIVES.names(), "models": MODELS.names(), "attacks": ATTACKS.names(),
             "suites": list(SUITES), "recipes": list(RECIPES)}[kind]
    lines = [line for line in out.splitlines() if not line.startswith("  ")]   # recipes: indented scale lines
    assert [line.split(": ", 1)[0].split(" (alias")[0] for line in lines] == list(names)   # one line each
    if kind == "recipes":   # ... each followed by what every scale of it runs
        assert all(f"  {scale}" in out for scale in ("smoke", "cpu", "paper"))
    if kind == "suites":                                                 # ... with the attacks' labels
        assert all(spec.label in line for line, suite in zip(lines, SUITES.values()) for spec in suite)
    example = {"objectives": "mmc: c_mm=10.0, half=True",
               "models": "lenet5: feature_dim=84",
               "attacks": "pgd: eps=<required>, steps=<required>, step_size=None, norm=linf",
               "suites": "mnist-corruptions: Gaussian noise sigma=0.05, Rotation",
               "recipes": "mnist-quick: LeNet-5 on MNIST, SCE vs MMC-10"}[kind]
    assert any(line.startswith(example) for line in lines), out
