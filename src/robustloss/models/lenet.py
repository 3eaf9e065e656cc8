"""LeNet-5 (LeCun et al. 1998), the PC paper's MNIST backbone: conv 6@5x5 pad 2, pool, conv 16@5x5, pool, 120, 84."""

from __future__ import annotations

from torch import Tensor, nn

from robustloss.errors import check_int


class LeNet5(nn.Module):
    """LeNet-5 backbone returning the feature vector ``z``.

    conv 6@5x5 (padding 2) - ReLU - max-pool 2 - conv 16@5x5 - ReLU - max-pool 2 -
    dense 120 - ReLU - dense ``feature_dim`` [- ReLU if ``feature_relu``].
    ``feature_dim`` defaults to 84, the 84-d layer of LeNet-5; the objective's head
    is the last layer.  ``feature_dim=2`` gives a 2-D feature space for plots.

    ``feature_relu`` - a ReLU after the feature layer, so ``z >= 0``:

    * **off (default)** for the MMC family: the MMC paper puts the class centers
      ``mu*_l`` on the sphere ``||z|| = C_MM`` of all of ``R^d`` (Eq. 8 and l.137;
      App. B.3, l.446) with pairwise inner products ``-C_MM^2 / (L - 1) < 0``
      (Algorithm 1, App. B.1), and two vectors of the positive orthant never have
      a negative inner product - so with a ReLU at most one center would be
      reachable by ``z``.  Off keeps the centers' geometry and earlier runs unchanged.
    * **on** for PC-paper recipes: the PC paper names LeNet-5 (LeCun et al. 1998)
      without layer details (Experiments, "Datasets and models"); its authors' released
      code (the repository linked in the paper's abstract, l.12,
      ``PC_Loss_Code/models/lenet5.py``) applies a ReLU to the 84-d layer before
      the 10-way output layer, i.e. to our ``z``.

    The ReLU has no parameters, so checkpoints load with either setting.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, feature_dim: int = 84,
                 feature_relu: bool = False) -> None:
        super().__init__()
        self.feature_dim = feature_dim = check_int("feature_dim", feature_dim, 1)
        self.feature_relu = bool(feature_relu)
        side = ((image_size // 2) - 4) // 2
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        dense: list[nn.Module] = [nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(),
                                  nn.Linear(120, feature_dim)]
        if self.feature_relu:
            dense.append(nn.ReLU())
        self.dense = nn.Sequential(*dense)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.conv(x))
