"""Evaluation engine, suites, resumable runs and the `evaluate` command's --worst-case / --diagnose output."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from robustloss.classifier import Classifier
from conftest import run_cli as _cli
from robustloss.errors import UserError
from robustloss import runs
from robustloss.evaluation import engine
from robustloss.evaluation.diagnostics import CHECKS
from robustloss.evaluation.engine import SpecResult, build_attack, evaluate
from robustloss.evaluation.rows import RowStore
from robustloss.evaluation.suite import SUITES, AttackSpec, load_suite, parse_spec

Data = tuple[Tensor, Tensor]

# weak budgets, so that each attack leaves survivors for the next one
SUITE = [AttackSpec("FGSM", "fgsm", {"eps": 0.05}),
         AttackSpec("BIM", "bim", {"eps": 0.1, "steps": 3}),
         AttackSpec("PGD", "pgd", {"eps": 0.12, "steps": 3, "step_size": 0.05})]


@pytest.fixture()
def run_dir(sce_model: Classifier, runs_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the SCE fixture's run folder (evaluations write into it)."""
    return Path(shutil.copytree(runs_dir / "lenet5-sce", tmp_path / "run"))


class _Round(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 64) / 64


class Quantised(nn.Sequential):
    """Rounds its input to 1/64 steps before the classifier: exactly zero input gradients (gradient masking)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(_Round(), model)


# --------------------------------------------------------------------------- engine
def test_worst_case_attacks_only_survivors_and_is_the_and(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test[0][:120], mnist_test[1][:120]
    res = evaluate(sce_model, x, y, SUITE, batch_size=50, worst_case=True)
    clean = res.clean
    r = [a.robust for a in res.attacks]
    assert res.attacks[0].attacked == int(clean.sum())
    assert res.attacks[1].attacked == int((clean & r[0]).sum())
    assert res.attacks[2].attacked == int((clean & r[0] & r[1]).sum())
    assert res.attacks[0].attacked > res.attacks[1].attacked > res.attacks[2].attacked > int(r[2].sum()) > 0
    assert not bool((r[1] & ~r[0]).any()) and not bool((r[2] & ~r[1]).any())   # a point not attacked is not robust
    assert torch.equal(res.worst_case, clean & r[0] & r[1] & r[2])
    assert torch.equal(res.worst_case, r[2])
    out = res.to_dict()
    assert out["worst_case_mode"] is True
    assert out["worst_case_robust"] == [int(v) for v in res.worst_case]
    assert set(out["worst_case_robust"]) == {0, 1} and len(out["worst_case_robust"]) == 120
    assert out["worst_case_accuracy"] == pytest.approx(sum(out["worst_case_robust"]) / 120)


def test_independent_mode_attacks_every_correct_point(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test[0][:80], mnist_test[1][:80]
    res = evaluate(sce_model, x, y, SUITE[:2], batch_size=80)
    assert [a.attacked for a in res.attacks] == [int(res.clean.sum())] * 2
    assert torch.equal(res.worst_case, res.clean & res.attacks[0].robust & res.attacks[1].robust)
    out = res.to_dict()
    assert out["worst_case_mode"] is False and "worst_case_robust" not in out
    assert out["worst_case_accuracy"] == pytest.approx(float(res.worst_case.float().mean()))


def test_cached_specs_are_not_run_again(sce_model: Classifier, mnist_test: Data) -> None:
    x, y = mnist_test[0][:40], mnist_test[1][:40]
    fooled_all = SpecResult(SUITE[0], torch.zeros(40, dtype=torch.bool), 1.0, 40)
    seen: list[str] = []
    res = evaluate(sce_model, x, y, SUITE, worst_case=True, cached={SUITE[0].key(): fooled_all},
                   on_result=lambda r: seen.append(r.spec.label))
    assert seen == ["BIM", "PGD"]
    assert res.attacks[0] is fooled_all
    assert [a.attacked for a in res.attacks[1:]] == [0, 0]
    assert float(res.worst_case.float().mean()) == 0.0


def test_a_bad_spec_fails_before_any_attack_runs(sce_model: Classifier, mnist_test: Data,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(engine, "run_attack", lambda *a, **k: calls.append("run"))
    bad = [SUITE[0], AttackSpec("x", "pgd", {"eps": 0.1})]   # steps missing
    with pytest.raises(UserError, match="needs option"):
        evaluate(sce_model, *mnist_test, bad)
    assert calls == []


def test_rows_keep_each_examples_queries(run_dir: Path) -> None:
    runs.evaluate_run(run_dir, SUITE[1:2], name="q", n=40, device="cpu", worst_case=True, progress=False)
    batch: list[dict[str, Any]] = []
    rows = 0
    for line in (run_dir / "eval" / "q.rows" / "rank-0.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "commit" not in record:
            batch.append(record)
            continue
        if record["kind"] == "attack":   # BIM-3, no random start: 1 + steps-before-the-hit gradients + final
            for row in batch:
                survived = row["adv_pred"] == row["label"]
                assert row["queries"] == 5 if survived else 2 <= row["queries"] <= 5, row
            # the rows' queries and the one probe of the call (x[:1]) make the batch's total
            assert sum(row["queries"] for row in batch) + 1 == record["queries"]
            rows += len(batch)
        batch = []
    assert rows > 30                   # the clean-correct points of 40


# --------------------------------------------------------------------------- runs: resume
def test_killed_evaluation_resumes_from_the_stored_rows(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine.run_attack
    calls: list[str] = []

    def killed_at_second(model: nn.Module, spec: AttackSpec, *args: Any, **kwargs: Any) -> SpecResult:
        if calls:
            raise KeyboardInterrupt
        calls.append(spec.label)
        return real(model, spec, *args, **kwargs)

    monkeypatch.setattr(engine, "run_attack", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        runs.evaluate_run(run_dir, SUITE[:2], name="t", n=60, device="cpu", worst_case=True, progress=False)
    rows_dir = run_dir / "eval" / "t.rows"
    saved = json.loads((rows_dir / "settings.json").read_text())
    assert saved == {"complete": False, "settings": {"seed": 0, "worst_case": True, "split": "test",
                                                     "order": [spec.key() for spec in SUITE[:2]]}}
    stored = RowStore(rows_dir).load()
    assert sorted(stored.clean) == list(range(60)) and len(stored.attacks) == 1   # clean pass + FGSM
    first = next(iter(stored.attacks.values()))
    assert not (run_dir / "eval" / "t.json").exists()

    def counting(model: nn.Module, spec: AttackSpec, *args: Any, **kwargs: Any) -> SpecResult:
        calls.append(spec.label)
        return real(model, spec, *args, **kwargs)

    calls.clear()
    monkeypatch.setattr(engine, "run_attack", counting)
    summary = runs.evaluate_run(run_dir, SUITE[:2], name="t", n=60, device="cpu", worst_case=True, progress=False)
    assert calls == ["BIM"]                        # FGSM came from the stored rows
    assert summary["attacks"][0]["attacked"] == len(first)
    assert summary["attacks"][1]["attacked"] == sum(r["adv_pred"] == r["label"] for r in first.values())
    on_disk = json.loads((run_dir / "eval" / "t.json").read_text())
    assert on_disk["worst_case_robust"] == summary["worst_case_robust"] and len(on_disk["worst_case_robust"]) == 60
    assert on_disk["worst_case_accuracy"] == pytest.approx(sum(on_disk["worst_case_robust"]) / 60)
    assert json.loads((rows_dir / "settings.json").read_text())["complete"] is True

    # a finished evaluation run again is computed again (reuse=True would return it)
    calls.clear()
    runs.evaluate_run(run_dir, SUITE[:2], name="t", n=60, device="cpu", worst_case=True, progress=False)
    assert calls == ["FGSM", "BIM"]

    # rows from other settings (another seed) are not used
    calls.clear()
    monkeypatch.setattr(engine, "run_attack", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        runs.evaluate_run(run_dir, SUITE[:2], name="t", n=60, device="cpu", worst_case=True, progress=False)
    calls.clear()
    monkeypatch.setattr(engine, "run_attack", counting)
    runs.evaluate_run(run_dir, SUITE[:2], name="t", n=60, device="cpu", seed=1, worst_case=True, progress=False)
    assert calls == ["FGSM", "BIM"]

    # in worst-case mode another attack order is other settings too (other survivors)
    calls.clear()
    monkeypatch.setattr(engine, "run_attack", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        runs.evaluate_run(run_dir, SUITE[:2], name="t", n=60, device="cpu", worst_case=True, progress=False)
    calls.clear()
    monkeypatch.setattr(engine, "run_attack", counting)
    runs.evaluate_run(run_dir, SUITE[1::-1], name="t", n=60, device="cpu", worst_case=True, progress=False)
    assert calls == ["BIM", "FGSM"]


# --------------------------------------------------------------------------- suites
@pytest.mark.parametrize("name", sorted(SUITES))
def test_builtin_suites_build_with_unique_labels(name: str, sce_model: Classifier) -> None:
    suite = load_suite(name)
    assert suite and len({s.label for s in suite}) == len(suite)
    for index, spec in enumerate(suite):
        build_attack(sce_model, spec, index)   # every option valid for its attack


def test_full_and_corruption_suites_follow_the_seeds() -> None:
    mnist, cifar = load_suite("mnist-full"), load_suite("cifar-full")
    for suite, eps in ((mnist, 0.3), (cifar, 8 / 255)):
        assert {s.attack for s in suite} == {"fgsm", "pgd", "mim", "apgd", "multitarget", "spsa"}
        assert all(s.params["eps"] == pytest.approx(eps) for s in suite)
        assert {s.params.get("loss") for s in suite if s.attack == "pgd"} == {None, "ce", "adaptive-margin"}
        assert {s.params.get("loss") for s in suite if s.attack == "apgd"} == {None, "ce", "dlr"}
        assert suite[0].attack == "fgsm" and suite[-1].attack == "spsa"   # cheapest first for --worst-case
    assert [s.params["step_size"] for s in mnist if s.attack == "pgd"] == [0.01] * 3
    assert [s.params["step_size"] for s in cifar if s.attack == "pgd"] == [pytest.approx(2 / 255)] * 3
    corr = load_suite("mnist-corruptions")
    assert [(s.attack, s.params) for s in corr] == [("gaussian-noise", {"sigma": 0.05}),
                                                     ("rotation", {"degrees": 30.0})]


def test_suite_json_files_load(tmp_path: Path) -> None:
    path = tmp_path / "suite.json"
    path.write_text(json.dumps([asdict(s) for s in SUITES["mnist-full"]]))
    assert load_suite(str(path)) == SUITES["mnist-full"]
    path.write_text('[{"label": "FGSM", "attack": "fgsm"}]')
    assert load_suite(str(path)) == [AttackSpec("FGSM", "fgsm", {})]


@pytest.mark.parametrize("text,message", [
    ("mnist-ful", "unknown suite 'mnist-ful'; valid choices: <file>.json, cifar-full, cifar-pgd, mnist-corruptions"),
    ("{tmp}/missing.json", "cannot read suite file"),
    ("{tmp}/broken.json", "broken.json is not valid JSON"),
    ("{tmp}/nokey.json", "nokey.json, entry 1: missing key(s) attack"),
])
def test_bad_suites_are_user_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "broken.json").write_text("[{")
    (tmp_path / "nokey.json").write_text('[{"label": "x"}]')
    with pytest.raises(UserError) as info:
        load_suite(text.replace("{tmp}", str(tmp_path)))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text,message", [("zoo:eps=1", "unknown attack 'zoo'; valid choices: apgd"),
                                          ("pgd:eps=0.1,stepz=2", "has no option 'stepz'; valid options:"),
                                          ("pgd:eps", "is not of the form key=value")])
def test_bad_specs_are_user_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=None) as info:
        parse_spec(text)
    assert message in str(info.value)


# --------------------------------------------------------------------------- command line
def test_cli_worst_case_and_diagnose_write_the_json_keys(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "evaluate", str(run_dir), "--attack", "fgsm:eps=0.1",
                          "--attack", "pgd:eps=0.1,steps=5,step_size=0.05", "--worst-case", "--diagnose",
                          "--n", "100", "--no-progress", "--device", "cpu")
    assert code == 0, err
    data = json.loads((run_dir / "eval" / "custom.json").read_text())
    assert data["worst_case_mode"] is True and len(data["worst_case_robust"]) == 100
    assert data["worst_case_accuracy"] == pytest.approx(sum(data["worst_case_robust"]) / 100)
    assert data["attacks"][1]["attacked"] < data["attacks"][0]["attacked"]
    diag = data["diagnostics"]
    assert diag["eps"] == pytest.approx(0.1) and diag["n"] == 100       # the suite's largest eps
    assert [c["name"] for c in diag["checks"]] == list(CHECKS)
    assert diag["passed"] is True and "WARNING" not in err, err
    assert "diagnostics: 5 of 5 gradient-masking checks passed" in out
    md = (run_dir / "eval" / "custom.md").read_text()
    assert "## Diagnostics (eps=0.1)" in md and "## Warnings" in md and "None: every" in md


def test_cli_prints_a_warning_per_failed_check(run_dir: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = runs.load_run
    monkeypatch.setattr(runs, "load_run", lambda *a, **k: Quantised(real(*a, **k)))
    code, out, err = _cli(capsys, "evaluate", str(run_dir), "--attack", "fgsm:eps=0.1", "--diagnose-eps", "0.3",
                          "--n", "40", "--no-progress", "--device", "cpu")
    assert code == 0, err
    data = json.loads((run_dir / "eval" / "custom.json").read_text())
    assert "worst_case_robust" not in data
    diag = data["diagnostics"]
    failed = [c["name"] for c in diag["checks"] if not c["passed"]]
    assert diag["eps"] == pytest.approx(0.3) and diag["passed"] is False
    assert {"white-box-beats-black-box", "accuracy-falls-with-eps", "finite-nonzero-gradients"} <= set(failed)
    lines = err.strip().splitlines()
    assert len(lines) == len(failed)
    assert all(line.startswith("robustloss: WARNING: diagnostic '") for line in lines)
    md = (run_dir / "eval" / "custom.md").read_text()
    assert md.split("## Warnings")[1].count("- WARNING: diagnostic") == len(failed)


def test_cli_diagnose_without_an_eps_is_a_one_line_error(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "evaluate", str(run_dir), "--suite", "mnist-corruptions", "--diagnose",
                        "--n", "10", "--no-progress", "--device", "cpu")
    assert code == 2 and "--diagnose-eps" in err and len(err.strip().splitlines()) == 1
    assert not (run_dir / "eval" / "mnist-corruptions.json").exists()


def test_finished_evaluation_is_reused_only_when_identical(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = engine.run_attack

    def counting(model: nn.Module, spec: AttackSpec, *args: Any, **kwargs: Any) -> SpecResult:
        calls.append(spec.label)
        return real(model, spec, *args, **kwargs)

    monkeypatch.setattr(engine, "run_attack", counting)
    first = runs.evaluate_run(run_dir, SUITE[:1], name="r", n=40, device="cpu", progress=False, reuse=True)
    again = runs.evaluate_run(run_dir, SUITE[:1], name="r", n=40, device="cpu", progress=False, reuse=True)
    assert calls == ["FGSM"] and again == first
    more = runs.evaluate_run(run_dir, SUITE[:1], name="r", n=41, device="cpu", progress=False, reuse=True)
    both = runs.evaluate_run(run_dir, SUITE[:2], name="r", n=41, device="cpu", progress=False, reuse=True)
    # with reuse the stored per-example rows are reused too: n=41 attacks only point #40, and the
    # two-attack suite (independent mode) runs only BIM
    assert calls == ["FGSM", "FGSM", "BIM"]
    assert more["attacks"][0]["attacked"] - first["attacks"][0]["attacked"] in (0, 1)
    assert both["attacks"][0] == {**more["attacks"][0], "time_s": both["attacks"][0]["time_s"]}


def test_table_shows_mean_distortion_of_minimum_norm_attacks() -> None:
    from robustloss.evaluation.report import results_table

    res = {"clean_accuracy": 0.9, "worst_case_accuracy": 0.1,
           "attacks": [{"label": "CW", "robust_accuracy": 0.1, "mean_distortion": 1.2345},
                       {"label": "PGD", "robust_accuracy": 0.25}]}
    table = results_table({"m": res}, {"m": {"clean": "92.0", "PGD": "3.0"}})
    assert "| m | 90.0 | 10.0 (d=1.23) | 25.0 | 10.0 |" in table
    assert "| m (paper) | 92.0 | - | 3.0 | - |" in table


def test_transfer_forwards_options_of_its_crafting_attack(sce_model: Classifier, substitute_model: Classifier,
                                                          mnist_test: Data) -> None:
    """``transfer`` takes **options of the attack it crafts with (e.g. MIM's decay), typed by that attack."""
    from robustloss.attacks import ATTACKS, MIM

    attack = ATTACKS.build("transfer", {"substitute_model": substitute_model, "attack": "mim", "decay": "0.5",
                                        "steps": "3", "eps": "0.3"}, model=sce_model)
    crafted = attack.crafting
    assert isinstance(crafted, MIM) and crafted.decay == 0.5 and crafted.steps == 3
    with pytest.raises(UserError, match="has no option 'bogus'"):
        ATTACKS.build("transfer", {"substitute_model": substitute_model, "attack": "mim", "bogus": "1", "eps": 0.3},
                      model=sce_model)
