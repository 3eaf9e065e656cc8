"""MMC on hierarchical Max-Mahalanobis centers (HMMC): the MMC paper, App. B.3; the reproducibility report, Sec. 4.7."""

from __future__ import annotations

from collections.abc import Sequence

from robustloss.centers import hierarchical_centers
from robustloss.errors import UserError, check_range
from robustloss.objectives.mmc import MMC

#: CIFAR-100 fine label names, in label order (alphabetical; the dataset's ``meta`` file).
CIFAR100_FINE_NAMES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

#: CIFAR-100 coarse (superclass) label names, in label order (alphabetical).
CIFAR100_COARSE_NAMES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)

#: The real CIFAR-100 fine -> coarse label map: ``CIFAR100_COARSE_OF_FINE[fine] = coarse``.
#: (Not ``fine // 5``: that is the wrong tree some reproductions use.)  The same list
#: is read from a user's copy by :func:`robustloss.datasets.cifar100_coarse_map`.
CIFAR100_COARSE_OF_FINE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)

#: Named class trees accepted by the ``tree`` option.
NAMED_TREES: dict[str, tuple[int, ...]] = {"cifar100": CIFAR100_COARSE_OF_FINE}


def parse_tree(tree: str | Sequence[int], num_classes: int) -> list[int]:
    """The fine -> superclass list from a tree name, a comma-separated string or a sequence.

    Raises :class:`UserError` if no tree is given, it cannot be parsed, or its
    length is not ``num_classes``.
    """
    if isinstance(tree, str):
        text = tree.strip()
        if not text:
            raise UserError("objective 'hmmc' needs a class tree: tree=cifar100 or tree=<comma-separated "
                            "superclass index of every fine class>")
        if text.lower() in NAMED_TREES:
            parsed = list(NAMED_TREES[text.lower()])
        else:
            try:
                parsed = [int(part) for part in text.split(",")]
            except ValueError:
                raise UserError(f"tree={tree!r} is neither a known tree ({', '.join(sorted(NAMED_TREES))}) "
                                "nor a comma-separated list of integers") from None
    else:
        parsed = list(tree)
    if len(parsed) != num_classes:
        raise UserError(f"the class tree has {len(parsed)} entries but there are {num_classes} classes; "
                        "give the superclass of every fine class")
    return parsed


class HMMC(MMC):
    """MMC loss (the MMC paper, Eq. 8) on hierarchical MM centers (its App. B.3).

    ``L = 1/2 ||z - mu^H_y||^2`` with ``mu^H_l = mu^(1,S)_{s(l)} + mu^(2,K)_j``:
    superclass centers of norm ``c1`` plus local MM centers of norm ``c2`` for the
    ``j``-th fine class of superclass ``s(l)`` (:func:`robustloss.centers.hierarchical_centers`).

    ``tree`` gives ``s(l)`` for every fine class: ``"cifar100"`` (the real CIFAR-100
    fine -> coarse map, :data:`CIFAR100_COARSE_OF_FINE`), a comma-separated list
    (``"0,0,1,1,..."``), or a sequence of ints from Python (e.g.
    ``robustloss.datasets.cifar100_coarse_map(data_dir)``).  There is no default
    tree: a missing tree, one of the wrong length or with superclass gaps is a
    :class:`UserError`.

    Defaults ``c1 = 10``, ``c2 = 1``: the values of the HMMC center file of the
    reproducibility report's code (the report, Sec. 4.7, finds ``c1`` in [5, 20]
    and ``c2`` in [0.1, 2] best), consistent with MMC-10.  Prediction logits and
    adaptive attack losses are :class:`MMC`'s (the MMC paper, App. B.4) on these centers.
    """

    name = "hmmc"

    def __init__(self, num_classes: int, feature_dim: int, tree: str = "", c1: float = 10.0,
                 c2: float = 1.0, half: bool = True) -> None:
        c1 = check_range("c1", c1, low=0.0, low_inclusive=False)
        c2 = check_range("c2", c2, low=0.0, high=c1, low_inclusive=False, high_inclusive=False)
        self.tree = parse_tree(tree, num_classes)
        self.c2 = c2
        super().__init__(num_classes, feature_dim, c_mm=c1, half=half,
                         centers=hierarchical_centers(self.tree, feature_dim, c1, c2))

    @property
    def c1(self) -> float:
        """Norm of the superclass centers (``C^1``; stored as MMC's ``c_mm``)."""
        return self.c_mm

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c2={self.c2:g}, superclasses={max(self.tree) + 1}"
