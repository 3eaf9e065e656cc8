"""KMNIST, Fashion-MNIST (IDX or .npz) and SVHN (.mat) from the user's files, with tiny fake files in tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from robustloss import UserError, datasets


def _idx(path: Path, array: np.ndarray, gz: bool) -> None:
    data = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()
    if gz:
        with gzip.open(f"{path}.gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def _gray(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def _write_idx(folder: Path, n_train: int, n_test: int, gz: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"train": _gray(0, n_train), "test": _gray(1, n_test)}
    for part, (x, y) in parts.items():
        images, labels = datasets.IDX_FILES[part]
        _idx(folder / images, x, gz)
        _idx(folder / labels, y, gz)
    return parts


@pytest.fixture
def small_val(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(datasets.VAL_SIZE, "kmnist", 4)
    monkeypatch.setitem(datasets.VAL_SIZE, "fashion-mnist", 4)
    monkeypatch.setitem(datasets.VAL_SIZE, "svhn", 3)


@pytest.mark.parametrize("name,sub,gz", [("kmnist", "kmnist", True), ("fashion-mnist", "FashionMNIST/raw", False),
                                         ("fashion-mnist", ".", True)])
def test_gray_idx_files(tmp_path: Path, small_val: None, name: str, sub: str, gz: bool) -> None:
    parts = _write_idx(tmp_path / sub, 12, 5, gz)
    x, y = datasets.load(name, "train", tmp_path)
    xv, yv = datasets.load(name, "val", tmp_path)
    xt, yt = datasets.load(name, "test", tmp_path)
    assert x.shape == (8, 1, 28, 28) and xv.shape == (4, 1, 28, 28) and xt.shape == (5, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= float(xt.min()) and float(xt.max()) <= 1.0
    raw_x, raw_y = parts["train"]
    assert torch.allclose(xv[0, 0], torch.from_numpy(raw_x[8]).float() / 255)   # val: the last training images
    assert y.tolist() == raw_y[:8].tolist() and yv.tolist() == raw_y[8:].tolist()
    assert yt.tolist() == parts["test"][1].tolist()
    assert datasets.info(name).image_size == 28


def test_kmnist_npz_files(tmp_path: Path, small_val: None) -> None:
    for part, seed, n in (("train", 0, 10), ("test", 1, 6)):
        x, y = _gray(seed, n)
        np.savez(tmp_path / f"kmnist-{part}-imgs.npz", x)
        np.savez(tmp_path / f"kmnist-{part}-labels.npz", y)
    xt, yt = datasets.load("kmnist", "test", tmp_path)
    assert xt.shape == (6, 1, 28, 28) and yt.tolist() == _gray(1, 6)[1].tolist()
    assert datasets.load("kmnist", "train", tmp_path)[0].shape == (6, 1, 28, 28)


def test_fashion_keras_npz(tmp_path: Path, small_val: None) -> None:
    (xa, ya), (xb, yb) = _gray(2, 9), _gray(3, 4)
    np.savez(tmp_path / "fashion-mnist.npz", x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    xt, yt = datasets.load("fashion-mnist", "test", tmp_path)
    assert torch.allclose(xt[:, 0], torch.from_numpy(xb).float() / 255) and yt.tolist() == yb.tolist()
    np.savez(tmp_path / "fashion-mnist.npz", x_train=xa, y_train=ya)
    with pytest.raises(UserError, match="no array x_test"):
        datasets.load("fashion-mnist", "test", tmp_path)


def test_gray_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"dataset 'kmnist' not found.*train-images-idx3-ubyte.*kmnist-\{train,test\}"
                                        r".*--data-dir"):
        datasets.load("kmnist", "test", tmp_path)
    with pytest.raises(UserError, match=r"fashion-mnist.npz.*--data-dir"):
        datasets.load("fashion-mnist", "train", tmp_path)
    assert list(tmp_path.iterdir()) == []          # nothing created
    _write_idx(tmp_path, 12, 5, gz=False)
    path = tmp_path / datasets.IDX_FILES["test"][0]
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match="truncated"):
        datasets.load("kmnist", "test", tmp_path)
    path.write_bytes(b"\x00\x00\x0b\x01" + b"\x00" * 8)
    with pytest.raises(UserError, match="not an IDX file of unsigned bytes"):
        datasets.load("kmnist", "test", tmp_path)
    _idx(tmp_path / datasets.IDX_FILES["test"][0], _gray(1, 5)[0], gz=False)
    _idx(tmp_path / datasets.IDX_FILES["test"][1], np.array([0, 1, 2, 3, 10], dtype=np.uint8), gz=False)
    with pytest.raises(UserError, match=r"labels outside \[0, 9\]"):
        datasets.load("kmnist", "test", tmp_path)


def _write_svhn(folder: Path, n_train: int, n_test: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sio = pytest.importorskip("scipy.io")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    out = {}
    for part, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0, 0] = 10
        sio.savemat(folder / datasets.SVHN_FILES[part], {"X": x, "y": y})
        out[part] = (x, y)
    return out


def test_svhn_mat_files(tmp_path: Path, small_val: None) -> None:
    parts = _write_svhn(tmp_path / "svhn", 10, 6)
    xt, yt = datasets.load("svhn", "test", tmp_path)
    x, y = datasets.load("svhn", "train", tmp_path)
    xv, _ = datasets.load("svhn", "val", tmp_path)
    assert xt.shape == (6, 3, 32, 32) and x.shape == (7, 3, 32, 32) and xv.shape == (3, 3, 32, 32)
    assert xt.dtype == torch.float32 and yt.dtype == torch.int64
    assert 0.0 <= float(xt.min()) and float(xt.max()) <= 1.0
    raw_x, raw_y = parts["test"]
    assert yt[0] == 0 and yt.tolist() == (raw_y[:, 0] % 10).tolist()      # label 10 is the digit 0
    assert set(yt.tolist()) <= set(range(10))
    # X is height x width x channel x N; the image is channel x height x width
    assert torch.allclose(xt[2], torch.from_numpy(raw_x[:, :, :, 2].transpose(2, 0, 1).astype(np.float32)) / 255)
    assert datasets.info("svhn").channels == 3


def test_svhn_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"dataset 'svhn' not found.*train_32x32.mat and test_32x32.mat.*--data-dir"):
        datasets.load("svhn", "train", tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(UserError, match="cannot read SVHN file"):
        datasets.load("svhn", "test", tmp_path)
