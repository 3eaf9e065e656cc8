"""Every recipe at smoke scale: report.md, results.json and each figure checked; the run cache; the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from robustloss.cli import main
from robustloss.reproduce import ALIASES, RECIPES, list_recipes, reproduce, reproduce_all, resolve
from robustloss.reproduce.framework import NOT_AT_SCALE, SCALES, Claim, run_key
from robustloss.reproduce.mmc import T1_SCALES, algorithm1
from robustloss.reproduce.papers.mmc_paper import MMC_PAPER
from robustloss.training.config import TrainConfig

from conftest import check_recipe_outputs  # noqa: E402

pytest.importorskip("matplotlib")


def _check_outputs(out: Path, name: str, scale: str) -> tuple[str, dict[str, Any]]:
    report, results = check_recipe_outputs(out, name, scale)
    for key in ("recipe", "experiments", "scale", "wall_time_s", "claims", "figures", "results", "deviations",
                "diagnostics", "runs", "command", "cpu_capability"):
        assert key in results, key
    assert f"**Scale: `{scale}`**" in report
    # the kernels float results depend on, named in the report and stored
    assert results["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"CPU kernels {results['cpu_capability']}" in report
    return report, results


def test_mmc_table1_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results" / "mmc-table1"
    results = reproduce("mmc-table1", out, scale="smoke", progress=False)
    report, saved = _check_outputs(out, "mmc-table1", "smoke")
    assert saved["results"] == json.loads(json.dumps(results["results"]))
    s = T1_SCALES["smoke"]
    models = saved["results"]["models"]
    assert set(models) == set(s.models)
    paper = MMC_PAPER.table("M1")
    for row in s.models:
        # ours and the paper's side by side: both rows, with the paper's numbers verbatim
        ours = next(line for line in report.splitlines() if line.startswith(f"| {row} (ours) |"))
        theirs = next(line for line in report.splitlines() if line.startswith(f"| {row} (paper) |"))
        assert theirs.rstrip(" |").split(" | ")[1:] == [paper[row]["clean"], *(v for c, v in paper[row].items() if c != "clean")]
        cols = models[row]["columns"]
        assert ours.split(" | ")[1] == f"{100 * cols['clean']:.1f}"
        for e in s.eps_names:
            assert 0.0 <= cols[f"strongest eps={e}"] <= cols["clean"] + 1e-9
        curve = models[row]["curve"]
        assert curve["eps"] == sorted(curve["eps"]) and len(curve["eps"]) == len(curve["strongest"])
        assert all(w <= p + 1e-9 for w, p in zip(curve["strongest"], curve["paper_attack"]))
        assert set(saved["diagnostics"][row]) >= {"passed", "checks", "eps"}
    assert "## Honest columns" in report and "## PGD convergence (M11)" in report
    assert "## Gradient-masking diagnostics" in report and "## Deviations from the paper" in report
    # smoke models are untrained: no claim about them gets a yes/no
    assert {c["verdict"] for c in saved["claims"]} == {NOT_AT_SCALE}
    # the run cache: one folder per model, named by the config's hash, and nothing is trained again
    runs = tmp_path / "results" / "runs"
    folders = sorted(p.name for p in runs.iterdir())
    assert len(folders) == len(s.models) and all(len(f) == 16 for f in folders)
    stamps = {f: (runs / f / "checkpoint.pt").stat().st_mtime_ns for f in folders}
    again = reproduce("mmc-table1", tmp_path / "results" / "copy", scale="smoke", progress=False)
    assert {f: (runs / f / "checkpoint.pt").stat().st_mtime_ns for f in folders} == stamps
    assert again["results"]["models"]["SCE"]["columns"] == models["SCE"]["columns"]


def test_mmc_centers_smoke_and_cpu(tmp_path: Path) -> None:
    for scale in ("smoke", "cpu"):
        out = tmp_path / scale
        reproduce("mmc-centers", out, scale=scale, progress=False)
        report, saved = _check_outputs(out, "mmc-centers", scale)
        assert {c["verdict"] for c in saved["claims"]} == {"yes"}    # exact claims hold at every scale
        c_mm = 1.0 if scale == "smoke" else 10.0
        for big_l, case in zip((2, 3, 4), saved["results"]["cases"].values()):
            assert math.isclose(case["expected_inner_product"], -c_mm ** 2 / (big_l - 1))
            assert case["max_inner_product_error"] < 1e-9 and case["max_norm_error"] < 1e-9
        assert "-C_MM^2/(L-1)" in report


def test_algorithm1_transcription() -> None:
    mu = algorithm1(10.0, 5, 4)
    gram = mu @ mu.T
    assert float((gram.diagonal() - 100).abs().max()) < 1e-9
    assert float((gram[0, 1:] + 100 / 3).abs().max()) < 1e-9
    assert float(mu[0, 0]) == 10.0 and float(mu[:, 4].abs().max()) == 0.0   # only the first L-1 coordinates used


@pytest.mark.parametrize("name", ["mnist-quick"])   # pc-mnist-table1 is now pc-table1: tests/test_reproduce_pc.py
def test_table_recipes_smoke(tmp_path: Path, name: str) -> None:
    reproduce(name, tmp_path / name, scale="smoke", progress=False)
    report, saved = _check_outputs(tmp_path / name, name, "smoke")
    assert saved["results"]["n"] == 40 and set(saved["results"]["models"]) == {"SCE", "MMC-10"}


def test_claim_verdicts_come_from_predicates() -> None:
    claim = Claim("a beats b", "l.1", lambda r: (r["a"] > r["b"], f"{r['a']} vs {r['b']}"))
    assert claim.verdict({"a": 2, "b": 1}, "cpu")["verdict"] == "yes"
    assert claim.verdict({"a": 0, "b": 1}, "paper")["verdict"] == "no"
    assert claim.verdict({"a": 2, "b": 1}, "smoke")["verdict"] == NOT_AT_SCALE
    assert claim.verdict({"a": 2}, "cpu")["verdict"] == NOT_AT_SCALE            # a number this scale lacks
    exact = Claim("x", "l.1", lambda r: (True, ""), exact=True)
    assert exact.verdict({}, "smoke")["verdict"] == "yes"


def test_run_key_is_the_full_config() -> None:
    a = TrainConfig(objective="mmc", epochs=3)
    assert run_key(a) == run_key(TrainConfig(objective="mmc", epochs=3))
    assert run_key(a) != run_key(TrainConfig(objective="mmc", epochs=4))
    assert run_key(a) != run_key(TrainConfig(objective="mmc", epochs=3, objective_options={"c_mm": 5.0}))


def test_run_key_leaves_out_defaults() -> None:
    # a new TrainConfig option with a behaviour-preserving default must not invalidate cached runs:
    # the key hashes only the fields that differ from their defaults
    import hashlib
    assert run_key(TrainConfig()) == hashlib.sha256(b"{}").hexdigest()[:16]
    assert run_key(TrainConfig(epochs=3)) == hashlib.sha256(b'{"epochs":3}').hexdigest()[:16]


def test_names_scales_and_listing() -> None:
    assert resolve("cifar10-table1", None)[1] == "paper" and resolve("cifar10-table1", None)[0].name == "mmc-table1"
    assert resolve("mmc-table1", None)[1] == "cpu"
    for bad, scale, message in (("table9", None, "unknown recipe 'table9'"), ("mnist-quick", "paper", "no paper scale"),
                                ("mmc-table1", "huge", "unknown scale 'huge'"),
                                ("cifar10-table1", "cpu", "is mmc-table1 --scale paper")):
        with pytest.raises(ValueError, match=message):
            resolve(bad, scale)
    text = list_recipes()
    for recipe in RECIPES.values():
        assert f"{recipe.name}" in text and all(e in text for e in recipe.experiments)
        assert set(recipe.plans) <= set(SCALES) and set(recipe.plans) == set(recipe.times)
    assert "cifar10-table1" in text and ALIASES


def test_reproduce_all_writes_an_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import robustloss.reproduce as rep

    assert main(["list", "recipes"]) == 0
    assert "mmc-table1 (alias: cifar10-table1)" in capsys.readouterr().out
    monkeypatch.setattr(rep, "RECIPES", {"mmc-centers": RECIPES["mmc-centers"]})
    index, ok = reproduce_all("smoke", tmp_path)
    assert ok and "[report](mmc-centers/report.md)" in index and (tmp_path / "mmc-centers" / "report.md").is_file()
    assert (tmp_path / "index.md").read_text() == index
    assert main(["reproduce", "mmc-centers", "--scale", "smoke", "--out", str(tmp_path / "c")]) == 0
    assert "mmc-centers (smoke scale" in capsys.readouterr().out


def test_context_train_waits_for_a_run_another_process_holds(tmp_path: Path) -> None:
    """Recipes side by side share a model: the second waits while the first holds the run's lock, then goes on."""
    import threading

    from robustloss.reproduce.framework import Context, run_key
    from robustloss.runs import run_is_complete, run_lock
    from robustloss.training.config import TrainConfig

    config = TrainConfig(dataset="synthetic", epochs=1, train_limit=64)
    ctx = Context("t", "smoke", tmp_path / "out", tmp_path / "runs", device="cpu", progress=False)
    run_dir = tmp_path / "runs" / run_key(ctx.config(config))
    run_dir.mkdir(parents=True)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with run_lock(run_dir):
            held.set()
            release.wait(10)

    waits: list[str] = []

    def log(message: str) -> None:   # the holder lets go once the waiting has been announced
        if "waiting" in message:
            waits.append(message)
            release.set()

    ctx.log = log  # type: ignore[method-assign]
    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    assert ctx.train("SCE", config, poll_s=0.1) == run_dir
    holder.join()
    assert waits and "in use by another robustloss process" in waits[0]   # it waited, then trained
    assert run_is_complete(run_dir)
