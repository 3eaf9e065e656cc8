"""The MMC paper's figure recipes at smoke scale (mmc-fig3a, mmc-fig3b, mmc-fig4) and ``robustloss transfer``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from robustloss import datasets
from robustloss.reproduce import RECIPES, reproduce
from robustloss.reproduce.framework import NOT_AT_SCALE, run_key
from robustloss.reproduce.mmc import T1_MODELS, T1_SCALES
from robustloss.reproduce.mmc_figures import F3B_ATTACKS, F3B_SCALES, FIG_MODELS, read_log, trajectory
from robustloss.runs import load_run, train_run
from robustloss.training.config import TrainConfig

from conftest import check_png, check_recipe_outputs, run_cli, strict_json  # noqa: E402

pytest.importorskip("matplotlib")


def _check(out: Path, name: str) -> tuple[str, dict[str, Any]]:
    report, results = check_recipe_outputs(out, name, verdicts={NOT_AT_SCALE})
    assert "## The paper's figure" in report and "## Deviations from the paper" in report
    return report, results


@pytest.fixture(scope="module")
def fig3a(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("figs")
    results = reproduce("mmc-fig3a", root / "mmc-fig3a", scale="smoke", runs=root / "runs", progress=False)
    return root, results


def test_recipes_registered() -> None:
    for name in ("mmc-fig3a", "mmc-fig3b", "mmc-fig4"):
        assert set(RECIPES[name].scales) == {"smoke", "cpu", "paper"}


def test_fig3a_smoke_uses_table1_models(fig3a: tuple[Path, dict[str, Any]]) -> None:
    root, _ = fig3a
    report, saved = _check(root / "mmc-fig3a", "mmc-fig3a")
    models = saved["results"]["models"]
    assert set(models) == set(FIG_MODELS)   # results.json is written with sorted keys
    s = T1_SCALES["smoke"]
    for row, m in models.items():
        # the run folder is mmc-table1's: same TrainConfig, same cache key
        assert Path(m["run"]).name == run_key(s.config(*T1_MODELS[row]))
        log = read_log(Path(m["run"]))
        assert m["logged_time_s"] == pytest.approx(torch.tensor([r["time_s"] for r in log]).cumsum(0).tolist())
        # the time axis is epochs x the side-by-side epoch time, measured in this run for every model
        assert m["epoch_time_s"] > 0 and m["time_s"] == pytest.approx([m["epoch_time_s"] * r["epoch"] for r in log])
        assert m["val_error"] == pytest.approx([1 - r["val_acc"] for r in log])
        assert 0.0 <= m["test_error"] <= 1.0
        assert f"| {row} | {len(log)} |" in report
    timing = saved["results"]["timing"]
    assert set(timing["times"]["cpu"]) == set(FIG_MODELS) and timing["images"] > 0
    for key, r in timing["ratios"].items():
        assert r["min"] <= r["median"] <= r["max"] and f"| {key} | {r['median']:.2f} |" in report
    # AT10 does 10 attack steps (a forward and a backward each) per training step: far costlier at any load
    assert timing["ratios"]["AT10 tar (SCE) / SCE"]["median"] > 2


def test_fig4_smoke_reuses_runs(fig3a: tuple[Path, dict[str, Any]]) -> None:
    root, first = fig3a
    runs = root / "runs"
    stamps = {p.name: (p / "checkpoint.pt").stat().st_mtime_ns for p in runs.iterdir()}
    reproduce("mmc-fig4", root / "mmc-fig4", scale="smoke", runs=runs, progress=False)
    assert {p.name: (p / "checkpoint.pt").stat().st_mtime_ns for p in runs.iterdir()} == stamps   # nothing retrained
    report, saved = _check(root / "mmc-fig4", "mmc-fig4")
    res = saved["results"]
    s = T1_SCALES["smoke"]
    assert sorted(res["matrices"]) == sorted(f"{a}{s.pgd_steps[0]} eps={e}" for a in ("PGD", "MIM") for e in s.eps_names)
    assert res["models"] == {row: first["results"]["models"][row]["run"] for row in FIG_MODELS}
    for key, matrix in res["matrices"].items():
        assert set(matrix) == set(FIG_MODELS) and all(set(row) == set(FIG_MODELS) for row in matrix.values())
        assert all(0.0 <= v <= 1.0 for row in matrix.values() for v in row.values())
        assert f"## {key}:" in report
    for eps_name in s.eps_names:
        assert set(res["strongest"][eps_name]) == set(FIG_MODELS)
    assert "**strongest** white-box (worst case)" in report


def test_fig3b_smoke(tmp_path: Path) -> None:
    out = tmp_path / "mmc-fig3b"
    reproduce("mmc-fig3b", out, scale="smoke", runs=tmp_path / "runs", progress=False)
    report, saved = _check(out, "mmc-fig3b")
    res = saved["results"]
    s = F3B_SCALES["smoke"]
    assert Path(res["run"]).name == run_key(s.config)
    assert set(res["accuracy"]) == {label for label, _, _ in F3B_ATTACKS}
    assert all(set(v) == {str(k) for k in s.steps_grid} for v in res["accuracy"].values())
    assert len(res["panels"]) == 2 and all(p["target"] != p["label"] for p in res["panels"])
    for path in res["trajectories"].values():
        assert len(path["features"]) == 2 and all(len(f) == 51 and len(f[0]) == 2 for f in path["features"])
        assert all(d <= 0.3 + 1e-6 for d in path["linf"])        # every iterate stays in the eps ball
    assert "PGD5" in report and "**strongest**" in report
    moves = res["feature_moves"]
    assert set(moves) == {label for label, _, targeted in F3B_ATTACKS if not targeted}
    assert all(m["norm_clean"] >= 0 and 0 <= m["angle_change_deg"] <= 180 for m in moves.values())


def test_trajectory_starts_at_the_clean_feature_and_follows_pgd(tmp_path: Path) -> None:
    config = TrainConfig(dataset="synthetic", model="lenet5", model_options={"feature_dim": 2}, objective="sce",
                         epochs=1, lr=0.05, batch_size=64, train_limit=512, seed=0)
    train_run(config, tmp_path / "run", progress=False, device="cpu")
    model = load_run(tmp_path / "run")
    x, y = datasets.load("synthetic", "test")
    z, pred, xs = trajectory(model, x[:3], y[:3], None, "ce", steps=6)
    assert z.shape == (7, 3, 2) and pred.shape == (7, 3) and xs.shape == (7, *x[:3].shape)
    with torch.no_grad():
        assert torch.allclose(z[0], model.features(x[:3]), atol=1e-5)
    assert torch.allclose(xs[0], x[:3])
    # each iterate moves by at most one step of 0.01 per pixel and stays in the 0.3-ball and in [0, 1]
    assert float((xs[1:] - xs[:-1]).abs().max()) <= 0.01 + 1e-6
    assert float((xs - x[:3]).abs().max()) <= 0.06 + 1e-6 and float(xs.min()) >= 0 and float(xs.max()) <= 1


# ------------------------------------------------------------------------------------------ robustloss transfer
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("transfer")
    out = []
    for objective, lr in (("sce", 0.05), ("mmc", 0.01)):
        config = TrainConfig(dataset="synthetic", model="lenet5", objective=objective, epochs=3, lr=lr,
                             batch_size=64, seed=0)
        train_run(config, root / objective, progress=False, device="cpu")
        out.append(str(root / objective))
    return out


def test_transfer_command(two_runs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robustloss.evaluation.transfer import transfer_matrix

    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "transfer", *two_runs, "--attack", "pgd:eps=0.1,steps=10,step_size=0.02",
                                "--n", "200", "--out", str(out), "--threads", "1")
    assert code == 0, err
    data = strict_json(out / "transfer-pgd.json")
    check_png(out / "transfer-pgd.png")
    text = (out / "transfer-pgd.md").read_text()
    assert text in stdout and "| crafted on \\ evaluated on |" in text
    assert data["n"] == 200 and set(data["matrix"]) == set(two_runs)
    x, y = datasets.load("synthetic", "test")
    models = {r: load_run(r) for r in two_runs}
    direct = transfer_matrix(models, models, x[:200], y[:200], "pgd:eps=0.1,steps=10,step_size=0.02")
    for (sub, tgt), value in direct.items():
        assert abs(data["matrix"][sub][tgt] - value) <= 1 / 200 + 1e-9   # one near-tie point at most
    # white-box PGD on the SCE run removes accuracy (measured: 100% clean -> 59.5%)
    sce = two_runs[0]
    assert data["clean_accuracy"][sce] >= 0.9 and data["matrix"][sce][sce] <= data["clean_accuracy"][sce] - 0.2
    code, stdout, err = run_cli(capsys, "transfer", *two_runs, "--attack", "mim:steps=2", "--n", "20",
                                "--out", str(out), "--threads", "1")
    assert code == 0, err
    assert "has no eps: using 0.3" in err                            # the default eps is announced
    assert json.loads((out / "transfer-mim.json").read_text())["attack"]["params"]["eps"] == 0.3


@pytest.mark.parametrize("args, message", [
    (["{a}"], "at least two run folders"),
    (["{a}", "{a}"], "given twice"),
    (["{a}", "{missing}"], "not a run folder"),
    (["{a}", "{b}", "--attack", "cw:steps=2"], "unknown transfer attack"),
    (["{a}", "{b}", "--attack", "pgd:eps=-1"], "eps"),
    (["{a}", "{b}", "--attack", "pgd:bogus=1"], "bogus"),
    (["{a}", "{b}", "--out", "{file}"], "not a folder"),
    (["{a}", "{b}", "--n", "0"], "--n"),
])
def test_transfer_refuses_bad_input(two_runs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    args: list[str], message: str) -> None:
    (tmp_path / "file").write_text("x")
    values = {"a": two_runs[0], "b": two_runs[1], "missing": str(tmp_path / "nope"), "file": str(tmp_path / "file")}
    argv = [a.format(**values) for a in args]
    if "--attack" not in argv:
        argv += ["--attack", "pgd:steps=2"]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run_cli(capsys, "transfer", *argv)
    assert code == 2 and err.startswith("robustloss: error:") and err.count("\n") == 1, err
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before            # nothing created
