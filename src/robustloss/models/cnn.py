"""A small 3-layer CNN, used as a substitute model for transfer attacks."""

from __future__ import annotations

from torch import Tensor, nn

from robustloss.errors import check_int


class CNN3(nn.Module):
    """conv 32@3x3 - ReLU - pool - conv 64@3x3 - ReLU - pool - dense ``feature_dim`` (128)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, feature_dim: int = 128) -> None:
        super().__init__()
        self.feature_dim = feature_dim = check_int("feature_dim", feature_dim, 1)
        side = image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * side * side, feature_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
