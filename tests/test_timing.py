"""Side-by-side training time (robustloss.training.timing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from robustloss import datasets
from robustloss.errors import UserError
from robustloss.training.config import AdversarialConfig, TrainConfig
from robustloss.training.timing import epoch_times, interleaved


def test_interleaved_alternates_the_order_after_an_untimed_warmup() -> None:
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times["cpu"].items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for clock in times.values() for ts in clock.values() for t in ts)


def test_interleaved_rejects_nothing_to_time() -> None:
    with pytest.raises(UserError, match="at least one function"):
        interleaved({}, reps=2)
    with pytest.raises(UserError, match="repetition"):
        interleaved({"a": lambda: None}, reps=0)


def test_epoch_times_trains_every_config_side_by_side_and_writes_nothing(tmp_path: Path) -> None:
    base = TrainConfig(dataset="synthetic", model="lenet5", objective="sce", epochs=1, batch_size=64, lr=0.01,
                       momentum=0.9, seed=0)
    at = TrainConfig(**{**base.__dict__, "adversarial": AdversarialConfig(method="pgd", eps=0.1, steps=10,
                                                                           step_size=0.025, targeted=False)})
    x, y = datasets.load("synthetic", "train")
    before = torch.get_num_threads()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        timing = epoch_times({"clean": base, "at": at}, x[:256], y[:256], reps=3)
    finally:
        os.chdir(cwd)
    assert torch.get_num_threads() == before            # the one-thread timing restores the setting
    assert list(tmp_path.iterdir()) == []
    assert timing.images == 256 and all(len(v) == 3 for v in timing.times["cpu"].values())
    lo, hi = timing.ratio_range("at", "clean")
    assert lo <= timing.ratio("at", "clean") <= hi
    assert timing.per_image("clean") == pytest.approx(timing.median("clean") / 256)
    # PGD-10 AT runs 10 forward/backward passes of the attack per training step; measured ratio ~10-12 here
    assert timing.ratio("at", "clean") > 3
    assert set(timing.as_dict()["median_cpu_s"]) == {"clean", "at"}


def test_epoch_times_rejects_mismatched_data() -> None:
    cfg = TrainConfig(dataset="synthetic", model="lenet5", objective="sce")
    with pytest.raises(UserError, match="matching, non-empty"):
        epoch_times({"a": cfg}, torch.zeros(0, 1, 16, 16), torch.zeros(0, dtype=torch.long))
