"""The two-node rehearsal (scripts/two_node_rehearsal.py): two torchrun launchers, ``--nnodes 2``, c10d on 127.0.0.1.

Measured on the 2-core reference machine: 34 s user + 7 s system CPU for this file, most of it
10 Python processes importing torch (4 launchers, 4 workers, 2 single-process runs); wall time
135 s at a load average of 19 (other jobs).  Not marked slow: under the 40 s CPU budget.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from robustloss import runs

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "two_node_rehearsal.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("two_node_rehearsal", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_node_rehearsal_equals_one_process(tmp_path: Path) -> None:
    rehearsal = _script()
    # measured: clean 46.9 %, robust 18.8 % on these 64 points (one epoch of 640 images, batch 16, lr 0.1)
    record = rehearsal.rehearse(tmp_path, train_limit=640, batch_size=16, lr=0.1, n=64,
                                attack="pgd:eps=0.1,steps=10,step_size=0.02", timeout=300)
    assert record["passed"], json.dumps(record["checks"], indent=1) + "\n" + "\n".join(
        err for step in record["steps"].values() for err in step["stderr"])
    assert [c["check"] for c in record["checks"]] == [
        "training runs on two nodes and in one process", "the two-node run had 2 processes",
        "two-node weights equal one-process weights", "sharded evaluation runs on two nodes and in one process",
        "each node wrote its own shard of rows", "two-node verdicts equal one-process verdicts"]
    assert json.loads((tmp_path / "rehearsal.json").read_text())["passed"] is True
    launch = record["steps"]["train_two_nodes"]["command"]
    assert "--nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:" in launch
    # the comparison means something: training moved the weights far beyond the tolerance, and the attack
    # fooled some points but not all
    trained = runs.load_run(tmp_path / "two-node").state_dict()
    init = runs.build_classifier(runs.read_config(tmp_path / "two-node")).state_dict()
    moved = max(float((trained[k] - init[k]).abs().max()) for k in init)
    assert record["weight_max_abs_diff"] <= 1e-5 < 1e-2 < moved
    clean, robust = record["evaluation"]["clean_accuracy"][0], record["evaluation"]["robust_accuracy"][0]
    assert 0 < robust < clean


def test_rehearsal_refuses_sizes_two_nodes_cannot_share(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _script().main(["--n", "1"])
    assert exc.value.code == 2 and "--n must be >= 2" in capsys.readouterr().err
