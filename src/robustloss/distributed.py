"""Running under ``torchrun``: process group, rank, device and the few collectives robustloss needs.

``torchrun --standalone --nproc_per_node N -m robustloss train|evaluate ...``
starts N processes with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` set.  :func:`setup` reads them (and only
them: without ``WORLD_SIZE > 1`` everything runs in one process, exactly as
before) and joins the process group with the backend that fits the device:
``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), ``gloo`` on the
CPU.  Asking for ``nccl`` without CUDA is a :class:`UserError`.

Collectives used elsewhere: :meth:`World.barrier`, :meth:`World.broadcast`
(rank 0 decides, e.g. "resume" or a refusal, and every rank acts on it, so a
refused start stops all ranks with the same one-line error instead of leaving
them waiting), :meth:`World.all_sum` and :meth:`World.gather_rows`.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from robustloss.errors import UserError, unknown_choice

BACKENDS = ("auto", "gloo", "nccl")


class RankError(UserError):
    """A user error every rank raises identically (printed by rank 0 only)."""


def lost_peer_message(exc: BaseException) -> str | None:
    """One line for a collective that failed because another rank died, else ``None``."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h|py):\d+\]\s*", "", text)   # gloo's "[.../pair.cc:553] " source location
    return (f"rank {_WORLD.rank} of {_WORLD.size} lost contact with another rank, which probably died "
            f"({text[:160]}); finished results stay on disk - rerun the same command to resume")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (``size == 1``: a plain single-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        """``True`` when running as one of several ranks (collectives are real)."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes run folders and prints tables."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (``obj`` of the other ranks is ignored)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def gather_rows(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Every rank's rows of each tensor (same first dimension on one rank), concatenated in rank order."""
        if not self.active:
            return tensors
        dev = self._device()
        n = torch.tensor([tensors[0].shape[0]], device=dev)
        counts = [torch.zeros_like(n) for _ in range(self.size)]
        dist.all_gather(counts, n)
        sizes = [int(c) for c in counts]
        top = max(sizes)
        out = []
        for t in tensors:
            padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=dev)
            padded[:t.shape[0]] = t.to(dev)
            parts = [torch.empty_like(padded) for _ in range(self.size)]
            dist.all_gather(parts, padded)
            out.append(torch.cat([p[:k] for p, k in zip(parts, sizes)]).to(t.device))
        return tuple(out)

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


_WORLD = World()


def world() -> World:
    """The current :class:`World` (single process until :func:`setup` joined a group)."""
    return _WORLD


def env_world_size() -> int:
    """``WORLD_SIZE`` set by ``torchrun`` (1 when not launched by it)."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(1, int(text))
    except ValueError:
        raise UserError(f"environment variable WORLD_SIZE must be an integer, got {text!r}") from None


def setup(device: torch.device, backend: str = "auto", timeout_s: float = 1800.0) -> tuple[World, torch.device]:
    """Join ``torchrun``'s process group when ``WORLD_SIZE > 1``; returns the world and this rank's device.

    ``backend="auto"`` picks ``nccl`` for a CUDA ``device`` and ``gloo`` for the CPU.
    On CUDA every rank uses ``cuda:LOCAL_RANK``.  Called again in the same
    process, it returns the group already joined.
    """
    global _WORLD
    if backend not in BACKENDS:
        raise unknown_choice("distributed backend", backend, BACKENDS)
    if backend == "nccl" and (device.type != "cuda" or not torch.cuda.is_available()):
        raise UserError("backend nccl needs CUDA GPUs but the device is "
                        f"{device.type}{'' if torch.cuda.is_available() else ' (no CUDA available)'}; "
                        "use --backend gloo (or auto) on the CPU")
    size = env_world_size()
    if size == 1:
        return _WORLD, device
    if dist.is_available() and dist.is_initialized():
        return _WORLD, _rank_device(device, _WORLD.local_rank)
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise UserError(f"WORLD_SIZE is {size} but {', '.join(missing)} are not set; launch with torchrun "
                        "(e.g. torchrun --standalone --nproc_per_node 2 -m robustloss ...)")
    chosen = backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _rank_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    timeout = datetime.timedelta(seconds=timeout_s)
    if chosen == "nccl":
        dist.init_process_group(chosen, timeout=timeout, device_id=dev)
    else:
        dist.init_process_group(chosen, timeout=timeout)
    _WORLD = World(rank=rank, size=size, local_rank=local_rank, backend=chosen)
    _stop_in_one_line()
    return _WORLD, dev


def _stop_in_one_line() -> None:
    """When torchrun stops this rank (SIGTERM, e.g. because another rank died), say so in one line and exit."""

    def stop(signum: int, frame: object) -> None:
        sys.stderr.write(f"robustloss: error: rank {_WORLD.rank} of {_WORLD.size} stopped by torchrun "
                         "(another rank failed or the job was cancelled); finished batches and checkpoints "
                         "stay on disk - run the same command again to resume\n")
        sys.stderr.flush()
        os._exit(128 + signum)   # no clean-up: the process group is broken; everything written is synced

    signal.signal(signal.SIGTERM, stop)


def _rank_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                        "use --nproc_per_node <= the number of GPUs")
    return torch.device("cuda", local_rank)


def teardown() -> None:
    """Leave the process group (if one was joined)."""
    global _WORLD
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _WORLD = World()


def shard(indices: Tensor, w: World) -> Tensor:
    """This rank's share of ``indices``: every ``size``-th one from position ``rank`` (DistributedSampler's split)."""
    return indices[w.rank::w.size]
