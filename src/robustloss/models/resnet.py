"""Pre-activation ResNet (ResNet-v2, He et al. 2016) for 32x32 inputs.

Depth ``6n + 2``: n = 5 is the "ResNet-32" of the MMC paper (Sec. 4.1), n = 18
"ResNet-110" (its Table 5).  As in the authors' code, global average pooling is followed by a
dense feature layer (256-d by default) whose output is ``z``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from robustloss.errors import check_int


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """ResNet-v2 backbone: three stages of ``n`` blocks (16, 32, 64 channels)."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, feature_dim: int = 256,
                 n: int = 5, width: int = 16) -> None:
        super().__init__()
        n = check_int("n (ResNet depth 6n+2)", n, 1)
        width = check_int("width", width, 1)
        self.feature_dim = feature_dim = check_int("feature_dim", feature_dim, 1)
        self.depth = 6 * n + 2
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for block in range(n):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.dense = nn.Linear(in_planes, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(self.stem(x))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.dense(out)
