"""Hierarchical MM centers (the MMC paper App. B.3, the reproducibility report) and the CIFAR-100 class tree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustloss import UserError
from robustloss.centers import hierarchical_centers, mm_centers
from robustloss.objectives import HMMC, build_objective
from robustloss.objectives.hmmc import CIFAR100_COARSE_NAMES, CIFAR100_COARSE_OF_FINE, CIFAR100_FINE_NAMES

from conftest import shared_file

#: the reproducibility report's generated centers, under <repo root>/../shared
REFERENCE = ("reference/mm_centers/kaiyon07_rp2020_rethinking_softmax/center_gen_python/"
             "generated_centers/cifar100_hmmc_tree_featuredim256_class20.npy")

# The 20 CIFAR-100 superclasses and their 5 classes each (Krizhevsky 2009, the dataset's web page).
SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}


def test_cifar100_map_derived_from_class_names() -> None:
    """Both label lists are alphabetical; the map follows from the superclass memberships."""
    coarse_names = sorted(SUPERCLASSES)
    fine_names = sorted(name for members in SUPERCLASSES.values() for name in members.split())
    assert len(fine_names) == 100 and len(set(fine_names)) == 100
    assert list(CIFAR100_COARSE_NAMES) == coarse_names
    assert list(CIFAR100_FINE_NAMES) == fine_names
    derived = [coarse_names.index(next(c for c, m in SUPERCLASSES.items() if fine in m.split()))
               for fine in fine_names]
    assert list(CIFAR100_COARSE_OF_FINE) == derived
    assert list(CIFAR100_COARSE_OF_FINE) != [i // 5 for i in range(100)]
    assert sorted(np.bincount(CIFAR100_COARSE_OF_FINE).tolist()) == [5] * 20
    # spot checks against the dataset's meta order
    assert CIFAR100_COARSE_OF_FINE[0] == 4        # apple -> fruit_and_vegetables
    assert CIFAR100_COARSE_OF_FINE[99] == 13      # worm -> non-insect_invertebrates
    assert CIFAR100_COARSE_OF_FINE[58] == 18      # pickup_truck -> vehicles_1


def test_matches_the_reproduction_tree_file_for_its_tree() -> None:
    """The reproduction's file is row i = 10 MM20[i // 5] + 1 MM5[i % 5]; same construction, its (wrong) tree."""
    reference = np.load(shared_file(REFERENCE))
    ours = hierarchical_centers([i // 5 for i in range(100)], 256, 10.0, 1.0)
    assert np.abs(ours.numpy() - reference).max() < 1e-6


def test_geometry_of_hierarchical_centers() -> None:
    tree = list(CIFAR100_COARSE_OF_FINE)
    c1, c2 = 10.0, 1.0
    mu = hierarchical_centers(tree, 128, c1, c2)
    top = mm_centers(20, 128, c1)
    members: dict[int, list[int]] = {}
    for fine, sup in enumerate(tree):
        members.setdefault(sup, []).append(fine)
    for sup, fines in members.items():
        offsets = mu[fines] - top[sup]
        # local MM centers of norm c2, pairwise cosine -1/(K-1), in label order
        assert torch.allclose(offsets.norm(dim=1), torch.full((5,), c2, dtype=torch.float64))
        assert torch.allclose(offsets, mm_centers(5, 128, c2))
        gram = offsets @ offsets.T / c2 ** 2
        off = gram[~torch.eye(5, dtype=torch.bool)]
        assert torch.allclose(off, torch.full_like(off, -0.25))
    # siblings are closer to each other than to classes of other superclasses
    dist = torch.cdist(mu, mu)
    same = torch.tensor([[a == b for b in tree] for a in tree])
    assert dist[same & ~torch.eye(100, dtype=torch.bool)].max() < dist[~same].min()


def test_uneven_tree_and_single_children() -> None:
    tree = [1, 0, 1, 2, 1]          # superclass sizes 1, 3, 1
    mu = hierarchical_centers(tree, 6, 5.0, 0.5)
    top = mm_centers(3, 6, 5.0)
    e1 = torch.zeros(6, dtype=torch.float64)
    e1[0] = 0.5
    assert torch.allclose(mu[1], top[0] + e1) and torch.allclose(mu[3], top[2] + e1)
    assert torch.allclose(mu[[0, 2, 4]] - top[1], mm_centers(3, 6, 0.5))
    single_root = hierarchical_centers([0, 0, 0], 4, 3.0, 1.0)      # one superclass: its center is 3 e_1
    root = torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(single_root - root, mm_centers(3, 4, 1.0))


@pytest.mark.parametrize("tree,dim,c1,c2", [
    ([], 4, 10.0, 1.0), ([0, 2], 4, 10.0, 1.0), ([0, -1], 4, 10.0, 1.0), ([0, 0.5], 4, 10.0, 1.0),
    ([0, 1], 0, 10.0, 1.0), ([0, 1], 4, 0.0, 1.0), ([0, 1], 4, 10.0, 0.0), ([0, 1], 4, 1.0, 2.0),
    ([0, 1], 4, float("inf"), 1.0), (["0", "1"], 4, 10.0, 1.0), ([0, float("nan")], 4, 10.0, 1.0),
    ([True, 0], 4, 10.0, 1.0),
])
def test_hierarchical_centers_reject_bad_input(tree: list[float], dim: int, c1: float, c2: float) -> None:
    with pytest.raises(UserError):
        hierarchical_centers(tree, dim, c1, c2)


def test_hmmc_tree_option_forms() -> None:
    named = build_objective("hmmc", 100, 128, {"tree": "cifar100"})
    listed = build_objective("hmmc", 100, 128, {"tree": ",".join(map(str, CIFAR100_COARSE_OF_FINE))})
    from_python = HMMC(100, 128, tree=list(CIFAR100_COARSE_OF_FINE))
    assert torch.equal(named.centers, listed.centers) and torch.equal(named.centers, from_python.centers)
    assert torch.allclose(named.centers.double(), hierarchical_centers(CIFAR100_COARSE_OF_FINE, 128, 10.0, 1.0),
                          atol=1e-5)
    assert named.tree == list(CIFAR100_COARSE_OF_FINE)


@pytest.mark.parametrize("tree", ["", "cifar100", "0,0,1", " , ", "0;0;1;1"])
def test_hmmc_tree_errors(tree: str) -> None:
    with pytest.raises(UserError):
        build_objective("hmmc", 10, 16, {"tree": tree})
