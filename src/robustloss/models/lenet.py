"""LeNet-5 as used in seed 004 (Sec. 5: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, 120, 84)."""

from __future__ import annotations

from torch import Tensor, nn

from robustloss.errors import check_int


class LeNet5(nn.Module):
    """LeNet-5 backbone returning the feature vector ``z``.

    conv 6@5x5 (padding 2) - ReLU - max-pool 2 - conv 16@5x5 - ReLU - max-pool 2 -
    dense 120 - ReLU - dense ``feature_dim`` (default 84: the 84-d layer of
    LeNet-5, seed 004).  ``z`` is taken *before* an activation so that it can
    reach centers with negative coordinates (MMC); the objective's head is the
    last layer.  ``feature_dim=2`` gives a 2-D feature space for plots.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, feature_dim: int = 84) -> None:
        super().__init__()
        self.feature_dim = feature_dim = check_int("feature_dim", feature_dim, 1)
        side = ((image_size // 2) - 4) // 2
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.dense = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(), nn.Linear(120, feature_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.conv(x))
