"""Shared by the benchmarks: one thread, interleaved timing, ratios of medians, a briefly trained model.

Every benchmark runs single-threaded by default (the reference machine's 2 cores are
shared, so multi-threaded timings mostly measure contention) and compares code paths
timed *interleaved* in one process (A B, B A, A B, ...: slow drifts of the machine's
load hit both sides alike).  Ratios are judged on the process CPU time, which time
spent waiting for a core does not inflate; the wall-clock ratio is printed next to it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import torch
import torch.nn.functional as F

from robustloss import datasets
from robustloss.classifier import Classifier
from robustloss.training import TrainConfig, Trainer
from robustloss.training import timing


def parser(doc: str) -> argparse.ArgumentParser:
    """The benchmark's options (its docstring is the ``--help`` text) plus ``--threads`` / ``--malloc-tune``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: the machine is shared)")
    p.add_argument("--malloc-tune", action="store_true",
                   help="glibc keeps freed buffers (mmap threshold 32 MiB, trim threshold 1 GiB): removes the "
                        "page-fault noise of large temporaries; see BENCHMARKS.md")
    return p


def setup(args: argparse.Namespace) -> None:
    """Apply ``--malloc-tune`` and ``--threads``; print the machine's conditions now and at exit."""
    tuned = malloc_tune() if args.malloc_tune else False
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"machine: nproc {os.cpu_count()}, load average {_load()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), malloc {'tuned' if tuned else 'default'}")
    atexit.register(lambda: print(f"done in {time.perf_counter() - start:.0f} s; load average {_load()}"))


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def malloc_tune() -> bool:
    """glibc ``mallopt``: mmap threshold 32 MiB (its maximum), trim threshold 1 GiB; False if not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1)
    except (OSError, AttributeError):
        return False


#: interleaved timing (AB, BA, ...) lives in the package, shared with the reproduction recipes
interleaved = timing.interleaved
Times: TypeAlias = timing.Times


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(times: Times, num: str, den: str, *, target: float | None, throughput: bool = False,
          label: str = "", per: int = 1, unit: str = "call") -> float:
    """Print and return ``median(num) / median(den)`` of the CPU times, judged against ``target`` (if any).

    ``throughput``: the ratio is ``median(den) / median(num)`` (higher is better,
    passes at ``>= target``); otherwise lower is better (passes at ``<= target``).
    Medians are shown per ``unit``, ``per`` of which make one repetition.
    """
    def r(clock: str) -> float:
        a, b = med(times[clock][num]), med(times[clock][den])
        return b / a if throughput else a / b

    pairs = [(b / a if throughput else a / b) for a, b in zip(times["cpu"][num], times["cpu"][den])]
    value = r("cpu")
    if target is None:
        verdict = "informational"
    else:
        ok = value >= target if throughput else value <= target
        verdict = f"target {'>=' if throughput else '<='} {target:g}: {'PASS' if ok else 'FAIL'}"
    cpu = times["cpu"]
    print(f"  {label}: {'throughput ' if throughput else ''}{num}/{den} = {value:.3f} (CPU; per-rep pairs "
          f"{min(pairs):.3f}..{max(pairs):.3f}; wall {r('wall'):.3f}); median CPU per {unit}: "
          f"{num} {med(cpu[num]) / per * 1e3:.3g} ms, {den} {med(cpu[den]) / per * 1e3:.3g} ms; "
          f"{len(pairs)} reps; {verdict}")
    return value


def trainer(config: TrainConfig, folder: str, channels_last: bool | None = False) -> Trainer:
    """A silent CPU :class:`Trainer` of ``config`` (``folder`` is where ``fit`` would write; nothing is written).

    ``channels_last``: the weights' layout; contiguous unless asked (the layout every table of
    BENCHMARKS.md before "Speed options" was measured with); ``None``: the package default
    (channels-last for conv backbones on an AVX-512 CPU).
    """
    return Trainer(config, folder, device="cpu", progress=False, log=lambda _msg: None, channels_last=channels_last)


def epochs(trainer: Trainer, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """A function running one ``trainer.train_epoch`` over ``(x, y)`` per call (no validation, no checkpoint)."""
    def epoch() -> None:
        trainer.train_epoch(trainer.epoch, x, y, augment=False)
        trainer.epoch += 1
    return epoch


def train_sce_lenet(images: int = 10_000, n_epochs: int = 3) -> Classifier:
    """An SCE LeNet-5 trained ``n_epochs`` epochs at lr 0.05 on the first ``images`` MNIST images, in eval mode.

    lr 0.05, not the default 0.01: 3 epochs at 0.05 on 10k images reach ~95 % test
    accuracy, 2 at 0.01 ~75 %.
    """
    x, y = datasets.load("mnist", "train")
    with tempfile.TemporaryDirectory() as tmp:
        t = trainer(TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=n_epochs, lr=0.05), tmp)
        epoch = epochs(t, x[:images], y[:images])
        for _ in range(n_epochs):
            epoch()
    return t.model.eval()


def bare_pgd(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, step_size: float,
             steps: int, generator: torch.Generator, targeted: bool = False) -> torch.Tensor:
    """L-inf PGD written plainly, the baseline our attacks are timed against: a uniform random start in the
    ball, then per step forward, CE, ``autograd.grad``, sign step, projection (towards ``labels`` if targeted)."""
    xa = (x + (torch.rand(x.shape, generator=generator) * 2 - 1) * eps).clamp(0, 1)
    step = -step_size if targeted else step_size
    for _ in range(steps):
        xa = xa.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), labels, reduction="sum"), xa)
        xa = (x + (xa.detach() + step * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return xa


class ForwardCounter:
    """Counts the forward passes and input rows through a module (a forward hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = self.rows = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self.calls += 1
        self.rows += int(inputs[0].shape[0])

    def reset(self) -> None:
        self.calls = self.rows = 0
