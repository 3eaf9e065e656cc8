"""Shared helpers of the benchmarks: thread setup, interleaved timing, machine conditions, reports.

Every benchmark

* runs single-threaded (``torch.set_num_threads(1)``): the reference machine has
  2 cores shared with other people's test runs, so multi-threaded timings would
  mostly measure contention; what we report are *ratios* of two code paths
  measured in the same process, which single-threaded runs make stable;
* times the two sides interleaved (A B B A A B ...: the order alternates every
  repetition so that slow drifts of the machine load hit both sides equally)
  and reports the median of each side and the ratio of the medians;
* prints the exact command that reproduces its figures and, with ``--json PATH``,
  writes them for ``benchmarks/run_all.py`` (which rewrites BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup_threads(threads: int = 1) -> None:
    """Pin torch to ``threads`` intra-op threads (and one inter-op thread)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started
        pass


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (used by run_all.py)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: the machine is shared; ratios are what matter)")
    parser.add_argument("--malloc-tune", action="store_true",
                        help="keep freed memory in the process (glibc mallopt: mmap threshold 32 MiB, trim "
                             "threshold 1 GiB) to remove page-fault noise; see BENCHMARKS.md")
    return parser


MALLOC_STATE = {"tuned": False}


def setup(args: Any) -> None:
    """Apply ``--malloc-tune`` (before torch allocates anything) and ``--threads``."""
    if getattr(args, "malloc_tune", False):
        MALLOC_STATE["tuned"] = malloc_tune()
    setup_threads(args.threads)


def command_line() -> str:
    """The command that reproduces this run, relative to the repository root when possible."""
    exe = Path(sys.executable)
    try:
        exe_s = str(exe.relative_to(ROOT)) if not exe.is_symlink() else str(exe.absolute().relative_to(ROOT))
    except ValueError:
        exe_s = str(exe)
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(ROOT))
    except ValueError:
        script_s = str(script)
    args = [a for a in sys.argv[1:]]
    # drop --json PATH: it only says where run_all.py collects the figures
    cleaned: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--json":
            skip = True
            continue
        if a.startswith("--json="):
            continue
        cleaned.append(a)
    return shlex.join([exe_s, script_s, *cleaned])


def malloc_tune() -> bool:
    """Make glibc keep freed memory: fixed mmap threshold 32 MiB (its maximum) and no trimming.

    Large temporary buffers (e.g. oneDNN's ~12 MiB scratch of every input-gradient of a
    1-channel convolution) are then reused instead of being mapped, page-faulted and
    zeroed on every call.  Returns False when not on glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024) == 1
        ok &= libc.mallopt(m_trim_threshold, 1 << 30) == 1
        return bool(ok)
    except (OSError, AttributeError):
        return False


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def conditions() -> dict[str, Any]:
    import torch

    return {"nproc": os.cpu_count(), "loadavg": [round(v, 2) for v in os.getloadavg()],
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
            "python": platform.python_version(), "malloc": "tuned" if MALLOC_STATE["tuned"] else "default"}


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """Time every function ``reps`` times, interleaved (order alternates each repetition: AB BA AB ...).

    Returns ``{"cpu": {name: [s, ...]}, "wall": {name: [s, ...]}}``: the process CPU
    time (``time.process_time``) and the wall-clock time of every repetition.
    ``warmup`` untimed calls of each function come first (allocator, kernel caches).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, dict[str, list[float]]] = {"cpu": {n: [] for n in names}, "wall": {n: [] for n in names}}
    for r in range(reps):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            c0, w0 = time.process_time(), time.perf_counter()
            fns[name]()
            w1, c1 = time.perf_counter(), time.process_time()
            out["cpu"][name].append(c1 - c0)
            out["wall"][name].append(w1 - w0)
    return out


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> tuple[float, float]:
    """(25th, 75th) percentile of ``values``."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _ratio(times: dict[str, list[float]], num: str, den: str, higher_is_better: bool) -> tuple[float, list[float]]:
    m_num, m_den = med(times[num]), med(times[den])
    ratio = (m_den / m_num) if higher_is_better else (m_num / m_den)
    paired = [(b / a) if higher_is_better else (a / b) for a, b in zip(times[num], times[den])]
    return ratio, paired


def ratio_row(case: str, timings: dict[str, dict[str, list[float]]], num: str, den: str, *, target: float,
              higher_is_better: bool = False, unit_scale: float = 1e3, unit: str = "ms",
              per: int = 1, per_label: str = "call", **extra: Any) -> dict[str, Any]:
    """One result row: median of each side, their ratio, pass/fail vs ``target``.

    The ratio is ``median(num) / median(den)`` of the times (``higher_is_better``:
    the throughput ratio ``median(den) / median(num)``).  It is judged on the
    process CPU time, which a busy shared machine perturbs far less than the
    wall clock (time spent waiting for a core is not counted); the wall-clock
    ratio of the same repetitions is reported next to it.  Medians are given
    per ``per_label`` (``per`` of them in one repetition).
    """
    cpu, wall = timings["cpu"], timings["wall"]
    ratio, paired = _ratio(cpu, num, den, higher_is_better)
    wall_ratio, wall_paired = _ratio(wall, num, den, higher_is_better)
    passed = ratio >= target if higher_is_better else ratio <= target
    scale = unit_scale / per
    row = {"case": case, "num": num, "den": den, "ratio": ratio, "wall_ratio": wall_ratio,
           "paired_ratio_median": med(paired), "paired_ratio_range": [min(paired), max(paired)],
           "wall_paired_ratio_range": [min(wall_paired), max(wall_paired)],
           "median_cpu": {num: med(cpu[num]) * scale, den: med(cpu[den]) * scale},
           "median_wall": {num: med(wall[num]) * scale, den: med(wall[den]) * scale},
           "iqr_cpu": {num: [v * scale for v in spread(cpu[num])], den: [v * scale for v in spread(cpu[den])]},
           "unit": unit + ("" if per == 1 else f"/{per_label}"), "per_rep": per,
           "reps": len(cpu[num]), "higher_is_better": higher_is_better,
           "target": ("≥ " if higher_is_better else "≤ ") + f"{target:g}", "target_value": target,
           "pass": passed}
    row.update(extra)
    return row


def print_row(row: dict[str, Any]) -> None:
    num, den, unit = row["num"], row["den"], row["unit"]
    kind = "throughput " if row["higher_is_better"] else ""
    lo, hi = row["paired_ratio_range"]
    mc, mw = row["median_cpu"], row["median_wall"]
    print(f"  {row['case']}: {kind}ratio {num}/{den} = {row['ratio']:.3f} (CPU time; per-rep pairs median "
          f"{row['paired_ratio_median']:.3f}, range {lo:.3f}..{hi:.3f}; wall-clock ratio {row['wall_ratio']:.3f})")
    print(f"    medians [{unit}] CPU: {num} {mc[num]:.3f}, {den} {mc[den]:.3f}; wall: {num} {mw[num]:.3f}, "
          f"{den} {mw[den]:.3f}; reps={row['reps']}; target {row['target']}: {'PASS' if row['pass'] else 'FAIL'}")


def finish(result: dict[str, Any], json_path: str | None, start_conditions: dict[str, Any], t0: float) -> None:
    """Add machine conditions, command and run time; print the footer; write JSON."""
    result["conditions"] = {**start_conditions, "loadavg_start": start_conditions["loadavg"],
                            "loadavg_end": loadavg()}
    result["conditions"].pop("loadavg", None)
    result["command"] = command_line()
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    c = result["conditions"]
    print(f"  machine: nproc={c['nproc']}, load avg start {c['loadavg_start']} end {c['loadavg_end']}, "
          f"torch {c['torch']}, threads={c['threads']}, {c['cpu']}")
    print(f"  elapsed {result['elapsed_s']} s")
    print(f"  reproduce: {result['command']}")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2, default=float) + "\n")


class ForwardCounter:
    """Counts forward passes (and input rows) through a module, via a forward hook."""

    def __init__(self, module: Any) -> None:
        self.calls = 0
        self.rows = 0
        self.grad_rows = 0        # rows forwarded with autograd on (a backward follows: attack steps)
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: Any, output: Any) -> None:
        import torch

        self.calls += 1
        n = int(inputs[0].shape[0])
        self.rows += n
        if torch.is_grad_enabled():
            self.grad_rows += n

    def reset(self) -> None:
        self.calls = self.rows = self.grad_rows = 0

    def remove(self) -> None:
        self.handle.remove()


def train_sce_lenet(n_images: int = 10_000, epochs: int = 3, seed: int = 0, batch_size: int = 128,
                    lr: float = 0.05) -> Any:
    """A briefly trained SCE LeNet-5 on the first ``n_images`` MNIST training images (eval mode).

    Uses ``Trainer.train_epoch`` directly (no checkpoint I/O).  lr 0.05 instead of the
    default 0.01: with 0.01 LeNet-5 is still at ~75 % test accuracy after 2 epochs on
    10k images; 3 epochs at 0.05 reach ~93 %.
    """
    import tempfile

    from robustloss import datasets
    from robustloss.training.config import TrainConfig
    from robustloss.training.trainer import Trainer

    x, y = datasets.load("mnist", "train")
    x, y = x[:n_images], y[:n_images]
    cfg = TrainConfig(dataset="mnist", model="lenet5", objective="sce", epochs=epochs, batch_size=batch_size,
                      seed=seed, train_limit=n_images, lr=lr)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, device="cpu", progress=False, log=lambda _msg: None)
        for epoch in range(epochs):
            trainer.train_epoch(epoch, x, y, augment=False)
    model = trainer.model
    model.eval()
    return model


def without_final_check(cls):
    """``cls`` (PGD or MIM) in final_iterate mode minus the forward that checks the last iterate.

    Measures the proposed change to ``IterativeAttack.run``: with ``final_iterate=True`` that
    forward only fills ``success`` / the restart bookkeeping.
    """
    import torch

    from robustloss.attacks.base import project, random_in_ball

    class NoFinalCheck(cls):
        def run(self, x, labels, targets):
            x_adv = x
            if self.random_start:
                x_adv = self.clamp(x + random_in_ball(x.shape, self.eps, self.norm, self.generator, x.device,
                                                      x.dtype))
            state = self.init_state(x)
            for _ in range(self.steps):
                _, _, grad = self.loss_and_grad(x_adv, labels, targets)
                step = self.step_size * self.direction(grad, state)
                x_adv = self.clamp(x + project(x_adv + step - x, self.eps, self.norm))
            return x_adv, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    return NoFinalCheck


def kernel_steps(model: Any, opt: Any, xb: Any, yb: Any, n: int = 1) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(train_step, attack_step)``: ``n`` SGD steps of the objective's loss in train mode, and
    ``n`` CE input-gradient computations (one attack step's forward + backward) in eval mode."""
    import torch
    import torch.nn.functional as F

    def train_step() -> None:
        for _ in range(n):
            model.train()
            loss = model.objective.loss(model.features(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def attack_step() -> None:
        model.eval()
        for _ in range(n):
            xa = xb.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xa), yb, reduction="none").sum(), xa)

    return train_step, attack_step
