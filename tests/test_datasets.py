"""Datasets: bundled MNIST, CIFAR from the standard python batches, synthetic data, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from robustloss import UserError, datasets


def test_mnist_splits_and_ranges() -> None:
    sizes = {"train": 50_000, "val": 10_000, "test": 10_000}
    for split, n in sizes.items():
        x, y = datasets.load("mnist", split)
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert 0.0 <= float(x.min()) and float(x.max()) < 1.0
        assert set(y.unique().tolist()) == set(range(10))
    _, y = datasets.load("mnist", "test")
    assert y[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first MNIST test labels


def _write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 10_000) for i in range(1, 6)), ("test_batch", 10_000)]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def _write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", 50_000), ("test", 10_000)):
        fine = rng.integers(0, 100, n)
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": list(fine),
                 "coarse_labels": list(fine % 20)}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_from_python_batches(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    x, y = datasets.load("cifar10", "train", tmp_path)
    assert x.shape == (45_000, 3, 32, 32) and y.shape == (45_000,)
    xv, _ = datasets.load("cifar10", "val", tmp_path)
    xt, _ = datasets.load("cifar10", "test", tmp_path)
    assert xv.shape[0] == 5_000 and xt.shape[0] == 10_000
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh)
    assert torch.allclose(x[0], torch.from_numpy(raw["data"][0].reshape(3, 32, 32)).float() / 255)


def test_cifar100_fine_coarse_and_map(tmp_path: Path) -> None:
    _write_cifar100(tmp_path)
    _, fine = datasets.load("cifar100", "test", tmp_path)
    _, coarse = datasets.load("cifar100-coarse", "test", tmp_path)
    assert torch.equal(coarse, fine % 20)
    assert datasets.cifar100_coarse_map(tmp_path) == [f % 20 for f in range(100)]


def test_missing_dataset_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"not found: looked for .*cifar-10-batches-py.*cifar-10-python.tar.gz"):
        datasets.load("cifar10", "train", tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        datasets.load("cifar10", "train", tmp_path / "nope")
    with pytest.raises(UserError, match="valid choices"):
        datasets.load("imagenet", "train")
    with pytest.raises(UserError, match="valid choices"):
        datasets.load("mnist", "dev")


def test_synthetic_is_deterministic_and_balanced() -> None:
    a, ya = datasets.load("synthetic", "train")
    b, yb = datasets.load("synthetic", "train")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert a.shape == (2000, 1, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert ya.bincount(minlength=10).min() > 100


def test_augment_shifts_and_flips_batched() -> None:
    x = torch.rand(64, 3, 32, 32)
    out = datasets.augment(x, torch.Generator().manual_seed(0), pad=4)
    assert out.shape == x.shape
    # each output is a shifted (possibly flipped) copy: its non-zero interior appears in the input
    for i in range(8):
        o = out[i]
        candidates = [x[i], x[i].flip(-1)]
        found = False
        for src in candidates:
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    shifted = torch.zeros_like(src)
                    ys, yd = slice(max(dy, 0), 32 + min(dy, 0)), slice(max(-dy, 0), 32 + min(-dy, 0))
                    xs, xd = slice(max(dx, 0), 32 + min(dx, 0)), slice(max(-dx, 0), 32 + min(-dx, 0))
                    shifted[:, yd, xd] = src[:, ys, xs]
                    found |= torch.equal(shifted, o)
        assert found
    again = datasets.augment(x, torch.Generator().manual_seed(0), pad=4)
    assert torch.equal(out, again)
    assert torch.equal(datasets.augment(x, torch.Generator(), pad=0, flip=False), x)


def test_mnist_cache_is_built_from_the_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTLOSS_CACHE", str(tmp_path))
    x, y = datasets.load("mnist", "val")
    assert (tmp_path / "mnist.npz").is_file()
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)
    cached_x, _ = datasets.load("mnist", "val")  # second load reads the cache
    assert torch.equal(x, cached_x)
    assert not list(tmp_path.glob("*.tmp")), "the cache is written atomically"
