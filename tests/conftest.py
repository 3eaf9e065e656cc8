"""Shared fixtures: small models trained once per test session on real MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustloss import datasets
from robustloss.classifier import Classifier
from robustloss.training import TrainConfig, train_run


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the default dataset cache (the user's) but never write runs outside tmp."""
    torch.manual_seed(0)


def _train(tmp: Path, objective: str, model: str = "lenet5", **options: object) -> Classifier:
    config = TrainConfig(dataset="mnist", model=model, objective=objective, objective_options=dict(options),
                         epochs=2, batch_size=64, train_limit=6000, seed=0)
    return train_run(config, tmp / f"{model}-{objective}", progress=False, device="cpu")


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def sce_model(runs_dir: Path) -> Classifier:
    """LeNet-5 + SCE trained 2 epochs on 6,000 MNIST images (~97% test accuracy)."""
    return _train(runs_dir, "sce")


@pytest.fixture(scope="session")
def mmc_model(runs_dir: Path) -> Classifier:
    """LeNet-5 + MMC-10 trained 2 epochs on 6,000 MNIST images."""
    return _train(runs_dir, "mmc")


@pytest.fixture(scope="session")
def substitute_model(runs_dir: Path) -> Classifier:
    """The small 3-layer CNN + SCE (a transfer-attack substitute)."""
    return _train(runs_dir, "sce", model="cnn3")


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 500 MNIST test images and labels."""
    x, y = datasets.load("mnist", "test")
    return x[:500], y[:500]
