"""torchrun: DDP training equals one process with the global batch; sharded evaluation equals one process.

The multi-process tests launch the real command (``torchrun --standalone -m robustloss``)
with 2 gloo processes on the CPU, one thread each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robustloss import runs
from robustloss.classifier import Classifier
from robustloss.distributed import World, shard
from robustloss.errors import UserError
from robustloss.evaluation.engine import example_seeds
from robustloss.evaluation.rows import RowStore
from robustloss.evaluation.suite import AttackSpec
from robustloss.runs import evaluate_run, train_run
from robustloss.training import TrainConfig

SRC = Path(runs.__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
PGD = ["--attack", "pgd:eps=0.1,steps=10,step_size=0.02"]
PGD_SPEC = AttackSpec("pgd:eps=0.1,steps=10,step_size=0.02", "pgd", {"eps": 0.1, "steps": 10, "step_size": 0.02})


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TORCHRUN, "-m", "robustloss", *argv], capture_output=True, text=True, env=_env(),
                          timeout=timeout, check=False)


def _config(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(dataset="mnist", model="lenet5", objective="sce", epochs=1, batch_size=64,
                                   train_limit=640, seed=3, lr=0.05)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ unit level
def test_shard_is_distributed_samplers_split() -> None:
    idx = torch.arange(10)
    parts = [shard(idx, World(rank=r, size=3)) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(torch.cat(parts).tolist()) == idx.tolist()


def test_example_seeds_depend_on_attack_seed_and_index_only() -> None:
    a = example_seeds(5, torch.arange(1000))
    assert len(set(a.tolist())) == 1000 and bool((a >= 0).all())
    assert torch.equal(example_seeds(5, torch.tensor([7, 3])), a[[7, 3]])
    assert not torch.equal(example_seeds(6, torch.arange(1000)), a)


def test_row_store_ignores_a_torn_batch_and_appends_after_it(tmp_path: Path) -> None:
    store = RowStore(tmp_path, rank=0)
    store.append([{"kind": "clean", "i": 0, "label": 1, "pred": 1}], {"kind": "clean", "queries": 1})
    with open(store.path, "a") as fh:   # a batch cut short by a kill: rows without commit, last line torn
        fh.write(json.dumps({"b": "x", "kind": "clean", "i": 1, "label": 2, "pred": 2}) + "\n")
        fh.write('{"b": "x", "kind": "clean", "i": 2, "lab')
    assert sorted(RowStore(tmp_path).load().clean) == [0]
    store.append([{"kind": "clean", "i": 3, "label": 0, "pred": 4}], {"kind": "clean", "queries": 1})
    rows = RowStore(tmp_path, rank=1).load()   # any rank reads every file
    assert sorted(rows.clean) == [0, 3] and rows.cost["clean"][0] == 2
    assert all(json.loads(line) for line in store.path.read_text().splitlines())   # the torn tail was cut


def test_attack_example_seeds_make_a_row_independent_of_its_batch(sce_model: Classifier,
                                                                  mnist_test: tuple[torch.Tensor, torch.Tensor]
                                                                  ) -> None:
    from robustloss.attacks import PGD

    x, y = mnist_test[0][:40], mnist_test[1][:40]
    attack = PGD(sce_model, 0.2, 5, 0.05, restarts=2, targeted=True)
    seeds = example_seeds(0, torch.arange(40))
    whole = attack.run(x, y, example_seeds=seeds)
    part = attack.run(x[25:], y[25:], example_seeds=seeds[25:])
    # same targets and random starts; the iterates agree up to the rounding of batched kernels
    assert (whole.prediction[25:] == part.prediction).float().mean() >= 0.9
    assert float((whole.adversarial[25:] - part.adversarial).abs().max()) <= 0.2 * 2 + 1e-6
    with pytest.raises(UserError, match="example_seeds must be an integer tensor of shape"):
        attack.run(x, y, example_seeds=seeds[:3])


# ------------------------------------------------------------------------------------------ training
def test_ddp_training_on_two_ranks_equals_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """2 gloo ranks x 32 = one process x 64: one epoch of LeNet-5 on 640 MNIST images.

    Measured max |difference| of the weights: 7e-9 (weights up to ~0.3; float32
    spacing there ~3e-8), from the order of the gradient summation.  Tolerance
    1e-5: 1000x the measured value, far below the change training makes (> 1e-2).
    """
    cfg = _config()
    single = train_run(cfg, tmp_path / "one", progress=False, device="cpu")
    args = ["train", "--dataset", "mnist", "--model", "lenet5", "--objective", "sce", "--epochs", "1",
            "--batch-size", "64", "--train-limit", "640", "--seed", "3", "--lr", "0.05", "--device", "cpu",
            "--threads", "1", "--no-progress", "--out", str(tmp_path / "two")]
    start = time.perf_counter()
    proc = _torchrun(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.perf_counter() - start < 60
    assert proc.stdout.count("trained sce on mnist") == 1          # rank 0 alone prints
    two = runs.load_run(tmp_path / "two")
    init = runs.build_classifier(cfg).state_dict()
    diff = max(float((a - b).abs().max()) for a, b in zip(single.state_dict().values(), two.state_dict().values()))
    moved = max(float((a - b).abs().max()) for a, b in zip(single.state_dict().values(), init.values()))
    assert diff < 1e-5 and moved > 1e-2, (diff, moved)
    runtime = json.loads((tmp_path / "two" / "runtime.json").read_text())
    assert runtime["world_size"] == 2 and runtime["backend"] == "gloo"
    log = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])["train_acc"] == pytest.approx(
        json.loads((tmp_path / "one" / "log.jsonl").read_text())["train_acc"], abs=1e-6)


def test_resuming_with_another_world_size_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(epochs=2)
    train_run(_config(epochs=2), tmp_path / "r", progress=False, device="cpu")
    data = json.loads((tmp_path / "r" / "runtime.json").read_text())
    assert data["world_size"] == 1
    (tmp_path / "r" / "runtime.json").write_text(json.dumps({**data, "world_size": 2}))
    capsys.readouterr()
    train_run(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")
    err = capsys.readouterr().err
    assert "trained by 2 process(es) and resumes with 1" in err


def test_nccl_without_cuda_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import run_cli

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "x"), "--backend", "nccl", "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and "backend nccl needs CUDA" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "x"), "--sync-bn", "--device", "cpu")
    assert code == 2 and err.count("\n") == 1 and "--sync-bn needs CUDA" in err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------ evaluation
@pytest.fixture(scope="module")
def sce_run(sce_model: Classifier, runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("dist") / "sce"
    shutil.copytree(runs_dir / "lenet5-sce", run)
    shutil.rmtree(run / "eval", ignore_errors=True)
    return run


def _verdicts(path: Path) -> list[int]:
    return list(json.loads(path.read_text())["worst_case_robust"])


def test_single_process_result_does_not_depend_on_batch_size(sce_run: Path) -> None:
    a = evaluate_run(sce_run, [PGD_SPEC], name="b100", n=200, batch_size=100, device="cpu", worst_case=True,
                     progress=False)
    b = evaluate_run(sce_run, [PGD_SPEC], name="b7", n=200, batch_size=7, device="cpu", worst_case=True,
                     progress=False)
    same = sum(u == v for u, v in zip(a["worst_case_robust"], b["worst_case_robust"]))
    assert same >= 199 and abs(a["worst_case_accuracy"] - b["worst_case_accuracy"]) <= 0.005
    assert 0.2 < a["worst_case_accuracy"] < a["clean_accuracy"]   # the attack does something, not everything
    rows = [json.loads(line) for line in (sce_run / "eval" / "b7.rows" / "rank-0.jsonl").read_text().splitlines()]
    attack_rows = [r for r in rows if r.get("kind") == "attack" and "commit" not in r]
    assert len(attack_rows) == a["attacks"][0]["attacked"]
    assert {"i", "label", "clean_pred", "adv_pred", "success", "distortion", "seed"} <= set(attack_rows[0])
    rb = json.loads((sce_run / "eval" / "b7.robustbench.json").read_text())
    assert rb["clean_acc"] == b["clean_accuracy"] and rb["robust_acc"] == b["worst_case_accuracy"]
    assert rb["threat_model"] == "Linf" and rb["eps"] == 0.1 and rb["forward_passes"] > 200 * 1
    assert rb["versions"]["torch"] == torch.__version__


def test_two_ranks_give_the_single_process_result(sce_run: Path) -> None:
    single = evaluate_run(sce_run, [PGD_SPEC], name="one", n=200, batch_size=100, device="cpu", worst_case=True,
                          progress=False)
    proc = _torchrun("evaluate", str(sce_run), *PGD, "--worst-case", "--num-points", "200", "--batch-size", "16",
                     "--name", "two", "--device", "cpu", "--threads", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("| model |") == 1                     # one table, from rank 0
    two = json.loads((sce_run / "eval" / "two.json").read_text())
    same = sum(u == v for u, v in zip(single["worst_case_robust"], two["worst_case_robust"]))
    assert same >= 199, same                                        # >= 99.5 % of the verdicts
    assert abs(single["worst_case_accuracy"] - two["worst_case_accuracy"]) <= 0.005
    assert two["clean_accuracy"] == single["clean_accuracy"] and two["n"] == 200
    files = sorted(p.name for p in (sce_run / "eval" / "two.rows").glob("rank-*.jsonl"))
    assert files == ["rank-0.jsonl", "rank-1.jsonl"]


def test_more_ranks_than_points_is_a_one_line_error(sce_run: Path) -> None:
    proc = _torchrun("evaluate", str(sce_run), *PGD, "--num-points", "1", "--name", "tiny", "--device", "cpu",
                     "--threads", "1", "--no-progress")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("robustloss:")]
    assert lines == ["robustloss: error: 2 processes (--nproc_per_node) for only 1 evaluation points; "
                     "use at most 1 processes or more points (--n)"]


def test_killed_sharded_evaluation_resumes_without_redoing_points(sce_run: Path) -> None:
    """Kill one rank mid-run: the finished batches stay on disk and the rerun only does the rest."""
    argv = [*TORCHRUN, "-m", "robustloss", "evaluate", str(sce_run), "--attack",
            "pgd:eps=0.1,steps=40,step_size=0.005", "--num-points", "300", "--batch-size", "8", "--name", "kill",
            "--device", "cpu", "--threads", "1", "--no-progress"]
    rows_dir = sce_run / "eval" / "kill.rows"
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 90
    commits = 0
    while time.time() < deadline and proc.poll() is None:
        files = list(rows_dir.glob("rank-*.jsonl")) if rows_dir.is_dir() else []
        commits = sum('"commit"' in line and '"kind": "attack"' in line
                      for f in files for line in f.read_text().splitlines())
        if commits >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the evaluation finished before it could be killed"
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    victim = max(int(p) for p in workers)       # torchrun's workers are its children
    os.kill(victim, signal.SIGKILL)                                 # one rank dies
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    # the surviving rank, stopped by torchrun, says so in one line (torchrun's own report follows)
    assert [ln for ln in err.splitlines() if ln.startswith("robustloss:")] == [
        "robustloss: error: rank 0 of 2 stopped by torchrun (another rank failed or the job was cancelled); "
        "finished batches and checkpoints stay on disk - run the same command again to resume"]
    assert not (sce_run / "eval" / "kill.json").exists()
    before = {f.name: f.read_text() for f in rows_dir.glob("rank-*.jsonl")}
    done_before = RowStore(rows_dir).load()
    assert sum(len(v) for v in done_before.attacks.values()) > 0

    again = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-2000:]
    for name, text in before.items():   # finished rows were kept, and only appended to
        assert (rows_dir / name).read_text().startswith(text.rstrip("\n").rsplit("\n", 1)[0])
    rows = [json.loads(line) for f in rows_dir.glob("rank-*.jsonl") for line in f.read_text().splitlines()
            if line.strip()]
    committed = {r["commit"] for r in rows if "commit" in r}
    keys = [(r["kind"], r.get("attack"), r["i"]) for r in rows if "i" in r and r["b"] in committed]
    assert len(keys) == len(set(keys))                             # no point was done twice
    summary = json.loads((sce_run / "eval" / "kill.json").read_text())
    assert summary["n"] == 300 and summary["attacks"][0]["attacked"] == round(summary["clean_accuracy"] * 300)
