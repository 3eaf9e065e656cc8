"""The reproducibility report's recipes (rr-*) at smoke scale, and the analyses they are built from."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from robustloss import UserError
from robustloss.reproduce import RECIPES, list_recipes, reproduce
from robustloss.reproduce.framework import NOT_AT_SCALE, run_key
from robustloss.reproduce.mmc import T1_SCALES
from robustloss.reproduce.papers.reproducibility_report import REPRODUCIBILITY_REPORT as RR
from robustloss.reproduce.reproducibility_report import (CMM_VALUES, HMMC_GRID, MNIST_PAIRS_TREE, OPTIMIZER_ROWS,
                                                         RR_RECIPES, auroc, circle_projection, density,
                                                         lse_statistics, model_config, natural_images)

from conftest import check_recipe_outputs, run_cli, strict_json  # noqa: E402

pytest.importorskip("matplotlib")

NAMES = [r.name for r in RR_RECIPES]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, dict[str, Any]]]:
    """Every rr recipe at smoke scale into one folder (one shared run cache): name -> (out, report, results)."""
    root = tmp_path_factory.mktemp("rr")
    out = {}
    for name in NAMES:
        reproduce(name, root / name, scale="smoke", progress=False, device="cpu")
        out[name] = (root / name, (root / name / "report.md").read_text(), strict_json(root / name / "results.json"))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_smoke_outputs(smoke: dict[str, tuple[Path, str, dict[str, Any]]], name: str) -> None:
    out, report, saved = smoke[name]
    assert check_recipe_outputs(out, name) == (report, saved)
    assert "## Deviations from the paper" in report
    if name not in ("rr-lse", "rr-cmm", "rr-hmmc"):   # MNIST experiments: both papers' MNIST epochs shown
        assert "the MMC paper says 40" in report
    # smoke models are untrained: no claim about them gets a verdict
    assert saved["claims"] and {c["verdict"] for c in saved["claims"]} == {NOT_AT_SCALE}
    assert "reproducibility report" in saved["paper"]


def _row(report: str, start: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {start} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_paper_numbers_beside_ours(smoke: dict[str, tuple[Path, str, dict[str, Any]]]) -> None:
    timing = smoke["rr-timing"][1]
    assert "48.075 min / 50 epochs" in _row(timing, "Standard MMC (paper, MNIST)")[0]
    assert _row(timing, "MMC / SCE")[2] == f"{48.075 / 39.8:.2f}"
    opt = smoke["rr-optimizers"][1]
    assert _row(opt, "RMSProp (paper)")[1:] == ["99.40%", "55.9"] and _row(opt, "RMSProp (ours)")
    unc = smoke["rr-uncertainty"][1]
    assert _row(unc, "Standard MMC (paper, lion)") == ["-1618.7", "-1670", "-1680"]
    assert _row(smoke["rr-lse"][1], "share with comparable (< 5x) 2nd and 3rd scores")[1] == "9.16%"
    cmm = smoke["rr-cmm"][1]
    assert [_row(cmm, f"{c:g}")[1] for c in CMM_VALUES] == ["92.16%", "-", "92.57%", "68.92%", "10%"]
    assert "C1 in [5, 20], C2 in [0.1, 2]" in smoke["rr-hmmc"][1]


def test_smoke_results_are_consistent(smoke: dict[str, tuple[Path, str, dict[str, Any]]]) -> None:
    timing = smoke["rr-timing"][2]["results"]
    rows = timing["rows"]
    # each ratio is the median of the per-repetition ratios of epochs timed back to back, inside their range
    adv, std = rows["Adversarial MMC"]["epoch_times_s"], rows["Standard MMC"]["epoch_times_s"]
    per_rep = sorted(a / b for a, b in zip(adv, std))
    assert timing["ratios"]["AT-MMC / MMC"] == pytest.approx(per_rep[len(per_rep) // 2])
    assert timing["ratio_ranges"]["AT-MMC / MMC"] == pytest.approx([per_rep[0], per_rep[-1]])
    assert all(r["batch_size"] == 50 and len(r["epoch_times_s"]) == 3 for r in rows.values())
    # AT does 10 attack steps (a forward and a backward each) per training step: far costlier at any load
    assert timing["ratios"]["AT-SCE / SCE"] > 3 and timing["ratios"]["AT-MMC / MMC"] > 3
    opt = smoke["rr-optimizers"][2]["results"]["models"]
    assert {m["optimizer"] for m in opt.values()} == set(OPTIMIZER_ROWS)
    assert len({m["run"] for m in opt.values()}) == 3
    unc = smoke["rr-uncertainty"][2]["results"]
    for m in unc["models"].values():
        assert 0.0 <= m["auroc"] <= 1.0 and len(m["top3_single_image"]) == 3
        assert m["top3_single_image"] == sorted(m["top3_single_image"], reverse=True)
    sce = unc["models"]["Standard SCE"]["top3_single_image"]
    assert all(0.0 <= p <= 1.0 for p in sce) and sum(sce) <= 1.0 + 1e-9
    assert all(v <= 0.0 for v in unc["models"]["Standard MMC"]["top3_single_image"])   # -1/2 ||z - mu||^2
    # the SCE model is shared between rr-uncertainty and rr-lse, the MMC-10 model with rr-optimizers (SGD)
    assert smoke["rr-lse"][2]["results"]["run"] == unc["models"]["Standard SCE"]["run"]
    assert opt["Momentum SGD"]["run"] == unc["models"]["Standard MMC"]["run"]
    cmm = smoke["rr-cmm"][2]["results"]["models"]
    assert set(cmm) == {f"{c:g}" for c in CMM_VALUES}
    hmmc = smoke["rr-hmmc"][2]["results"]
    assert len(hmmc["models"]) == 2 + len(HMMC_GRID) and hmmc["tree"] == ",".join(map(str, MNIST_PAIRS_TREE))
    feats = smoke["rr-features"][2]["results"]["models"]
    assert set(feats) == {"SCE 84-d", "MMC-10 84-d", *(f"{m} {d}-d layer" for m in ("SCE", "MMC-10") for d in (2, 3))}
    assert smoke["rr-features"][2]["results"]["models"]["SCE 84-d"]["run"] == unc["models"]["Standard SCE"]["run"]


def test_configs_share_mmc_table1_runs_and_follow_the_report() -> None:
    # the cpu SCE / MMC-10 models are mmc-table1's (same run-cache key), so they are trained once
    for objective, options in (("sce", {}), ("mmc", {"c_mm": 10.0})):
        assert run_key(model_config("cpu", objective, options)) == run_key(T1_SCALES["cpu"].config(objective,
                                                                                                     options, None))
    paper = model_config("paper", "mmc", {"c_mm": 10.0}, mnist=True)
    assert (paper.dataset, paper.model, paper.epochs, paper.batch_size, paper.lr, paper.momentum) == \
        ("mnist", "resnet", 50, 50, 0.01, 0.9)
    assert model_config("paper", "sce").dataset == "cifar10" and model_config("paper", "sce").epochs == 200
    # rr-hmmc at paper scale: CIFAR-100 with its real superclass tree; below it, the MNIST substitute tree
    from robustloss.reproduce.framework import Context
    from robustloss.reproduce.reproducibility_report import _hmmc_configs

    for scale, dataset, tree in (("paper", "cifar100", "cifar100"), ("cpu", "mnist", "0,1,4,2,3,4,0,1,2,3")):
        configs = _hmmc_configs(Context("rr-hmmc", scale, Path("out"), Path("runs")))
        hmmc = [c for k, c in configs.items() if k.startswith("HMMC")]
        assert len(hmmc) == len(HMMC_GRID) and configs["MMC-10(rand) (the report's)"].objective == "mmc-rand"
        assert all(c.dataset == dataset and c.objective_options["tree"] == tree for c in hmmc)
    # the substitute tree: five superclasses of two digits each
    assert sorted(MNIST_PAIRS_TREE) == [s for s in range(5) for _ in range(2)]
    assert all(0.1 <= c2 <= 2 for _, c2 in HMMC_GRID) and max(c1 for c1, _ in HMMC_GRID) == 100
    assert set(NAMES) <= set(RECIPES) and all(n in list_recipes() for n in NAMES)
    assert all(r.paper is RR for r in RR_RECIPES)


def test_auroc_by_hand() -> None:
    assert auroc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])) == 0.0
    # pairs (pos, neg): (1,1) tie 1/2, (1,2) 0, (3,1) 1, (3,2) 1 -> 2.5 / 4
    assert auroc(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0])) == 0.625
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, generator=gen), torch.randn(200, generator=gen) + 1
    brute = float(((a[:, None] > b[None]).double() + 0.5 * (a[:, None] == b[None]).double()).mean())
    assert auroc(a, b) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError):
        auroc(torch.tensor([]), b)


def test_lse_statistics_by_hand() -> None:
    ln5 = math.log(5)
    logits = torch.tensor([[10.0, 0.0, 0.0, -50.0],          # 2nd and 3rd equal: comparable
                           [10.0, 3.0, 3.0 - ln5 - 0.01, -50.0],  # p2 / p3 just above 5: not comparable
                           [0.0, 10.0, 9.0, -50.0]], dtype=torch.float64)   # misclassified: non-true 10, 9
    labels = torch.tensor([0, 0, 0])
    stats = lse_statistics(logits, labels)
    # overall 2nd and 3rd: row 0 (0, 0) only; row 2's are 9 and 0
    assert stats["comparable"] == pytest.approx(1 / 3)
    # two largest non-true: rows 0 (0, 0) and 2 (10, 9: e^1 = 2.7 < 5)
    assert stats["comparable_non_true"] == pytest.approx(2 / 3)
    # row 0: LSE of {0, 0, -50} - 0 = log(2 + e^-50)
    gaps = [math.log(2 + math.exp(-50)), math.log(1 + math.exp(-ln5 - 0.01) + math.exp(-53)),
            math.log(1 + math.exp(-1) + math.exp(-60))]
    assert stats["gap_max_mean"] == pytest.approx(sum(gaps) / 3, rel=1e-9)
    # with only three non-true classes the five largest are all of them: no error left
    assert stats["gap_top5_mean"] == pytest.approx(0.0, abs=1e-12)


def test_density_by_hand() -> None:
    # two classes with means (0, 0) and (4, 0); every point at distance 1 from its mean: spread 1 / 4
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [4.0, 1.0], [4.0, -1.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert density(z, y) == pytest.approx(0.25)
    assert density(10 * z, y) == pytest.approx(0.25)          # scale free
    assert density(torch.zeros(4, 2), y) is None               # collapsed features: no spread to speak of


def test_circle_projection_maps_mm_centers_onto_a_circle() -> None:
    from robustloss.centers import mm_centers

    centers = mm_centers(10, 84, 10.0)
    proj = circle_projection(centers)
    pts = centers @ proj.T
    assert proj.shape == (2, 84)
    torch.testing.assert_close(pts.norm(dim=1), torch.full((10,), 10.0, dtype=torch.float64), atol=1e-9, rtol=0)
    angles = 2 * math.pi * torch.arange(10, dtype=torch.float64) / 10
    torch.testing.assert_close(pts, 10 * torch.stack([angles.cos(), angles.sin()], dim=1), atol=1e-9, rtol=0)


def test_natural_images_are_seeded_inputs() -> None:
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    a, names = natural_images(1, 28, crops=2)
    b, _ = natural_images(1, 28, crops=2)
    assert a.shape == (len(names), 1, 28, 28) and len(names) == 18 * 3 and "chelsea" in names
    assert torch.equal(a, b) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert float(a.std()) > 0.1            # real images, not blank (measured 0.26)
    rgb, _ = natural_images(3, 32, crops=0)
    assert rgb.shape == (18, 3, 32, 32)


def test_missing_extras_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(UserError, match="extras"):
        natural_images(1, 28)


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "list", "recipes")
    assert code == 0 and all(n in out for n in NAMES)
    code, _, err = run_cli(capsys, "reproduce", "rr-hmmc", "--scale", "huge", "--out", str(tmp_path / "x"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
