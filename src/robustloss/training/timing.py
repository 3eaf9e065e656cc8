"""Training time measured side by side: several training recipes timed in one process, in alternating order.

A training log's ``time_s`` is the wall time of an epoch under whatever else the
machine was doing when that run was trained; two runs trained hours apart, or
beside different jobs, cannot be compared (on the shared 2-core machine of our
reports the same epoch took from 36 s to 137 s).  Ratios of training cost - the
MMC paper's "little extra computation" (l.176) and "AT is expensive"
(Fig. 3(a)), the reproducibility report's Table 1 - are therefore measured
here: every recipe trains on the same images in turn, the order alternating
(AB, BA, ...) after an untimed warm-up round, so that a load change hits all
of them alike, and each repetition yields one ratio.  One torch thread by default (spinning
OpenMP threads would make the CPU time measure contention).  CPU time
(``time.process_time``) is the primary clock (it does not count time the
process waited for the CPU); wall time is kept beside it.

Nothing is written: the trainers are built for timing only (fresh weights from
the config's seed, no checkpoint, no log).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustloss.errors import UserError
from robustloss.training.config import TrainConfig
from robustloss.training.trainer import Trainer

#: ``{"cpu": {name: [seconds, ...]}, "wall": {name: [seconds, ...]}}``, one entry per repetition
Times = dict[str, dict[str, list[float]]]


def interleaved(fns: Mapping[str, Callable[[], Any]], reps: int, warmup: int = 1) -> Times:
    """Call every function ``reps`` times, the order alternating (AB, BA, ...), after ``warmup`` untimed rounds.

    Returns the CPU and wall time of every call (:data:`Times`).
    """
    if reps < 1 or not fns:
        raise UserError(f"interleaved timing needs at least one function and one repetition (got {len(fns)} "
                        f"functions, {reps} repetitions)")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: Times = {"cpu": {n: [] for n in names}, "wall": {n: [] for n in names}}
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            fns[name]()
            times["wall"][name].append(time.perf_counter() - w0)
            times["cpu"][name].append(time.process_time() - c0)
    return times


@dataclass(frozen=True)
class EpochTimes:
    """Side-by-side training times of several configs (see :func:`epoch_times`)."""

    images: int                      # training images per timed epoch
    times: Times

    def median(self, name: str, clock: str = "cpu") -> float:
        """The median seconds of one timed epoch of ``name``."""
        return statistics.median(self.times[clock][name])

    def per_image(self, name: str, clock: str = "cpu") -> float:
        """The median seconds per training image of ``name``."""
        return self.median(name, clock) / self.images

    def ratio(self, num: str, den: str, clock: str = "cpu") -> float:
        """The median over repetitions of ``time(num) / time(den)`` (each pair measured back to back)."""
        pairs = [a / b for a, b in zip(self.times[clock][num], self.times[clock][den])]
        return statistics.median(pairs)

    def ratio_range(self, num: str, den: str, clock: str = "cpu") -> tuple[float, float]:
        """The smallest and largest per-repetition ratio: the noise the median ratio carries."""
        pairs = [a / b for a, b in zip(self.times[clock][num], self.times[clock][den])]
        return min(pairs), max(pairs)

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.images, "times": self.times,
                "median_cpu_s": {n: self.median(n) for n in self.times["cpu"]},
                "median_wall_s": {n: self.median(n, "wall") for n in self.times["wall"]}}


def epoch_times(configs: Mapping[str, TrainConfig], x: Tensor, y: Tensor, *, reps: int = 3, warmup: int = 1,
                device: str = "cpu", threads: int | None = 1) -> EpochTimes:
    """Train every config on the same ``(x, y)`` in turn, ``reps`` timed epochs each, and return their times.

    Each config gets its own :class:`~robustloss.training.trainer.Trainer`
    (fresh weights, its own optimizer, objective and adversarial training);
    an epoch is one pass over ``(x, y)`` in the config's batch size, with the
    config's AT, without validation.  Use a few thousand images: enough that
    per-call overheads vanish, few enough that a repetition takes seconds.

    ``threads``: torch's CPU threads while timing (default 1, restored after; ``None``: unchanged).  With
    several threads on a loaded machine, idle OpenMP threads spin and the CPU time measures contention.
    """
    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"epoch_times needs matching, non-empty images and labels (got {len(x)} and {len(y)})")
    with tempfile.TemporaryDirectory(prefix="robustloss-timing-") as folder:
        trainers = {name: Trainer(cfg, folder, device=device, progress=False, log=lambda _msg: None)
                    for name, cfg in configs.items()}

        def epoch(trainer: Trainer) -> Callable[[], None]:
            def run() -> None:
                trainer.train_epoch(trainer.epoch, x, y, augment=False)
                trainer.epoch += 1
            return run

        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            times = interleaved({name: epoch(t) for name, t in trainers.items()}, reps, warmup)
        finally:
            torch.set_num_threads(before)
    return EpochTimes(len(x), times)
