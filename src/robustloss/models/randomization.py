"""Input randomisation at inference (Xie et al. 2018), a defence wrapped around a trained model.

Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating adversarial effects through randomization" (ICLR), Sec. 3
and Fig. 1: before every forward pass the input image (ImageNet, 299 x 299) is

1. *randomly resized* to ``r x r``, ``r`` drawn uniformly from the integers ``[299, 331)`` (the paper;
   nearest-neighbour resizing, as in the authors' released code, github.com/cihangxie/
   NIPS2017_adv_challenge_defense, ``defense.py``), then
2. *randomly padded* with zeros to ``331 x 331``: of the ``w = 331 - r`` padding rows, ``top`` (uniform over
   the integers ``[0, w]``, the authors' ``random.randint(0, 331 - r)``; their README counts
   ``(331 - r + 1)^2`` padding patterns) go above the image and ``w - top`` below; the same, drawn
   independently, for the columns.

Not taken from the authors' challenge submission (the same ``defense.py``): its ``r`` in ``[310, 331)``, its random
horizontal flips and its average of the predictions over 30 draws; we follow the paper (one draw per
prediction).

No training change: the defence wraps the trained model (the I-SCE paper's "Random" row wraps its SCE
model).  Our scaling to small images (:func:`scaled_max_size`): the padded size keeps Xie et al.'s ratio,
``M = round(H * 331 / 299)``, and ``r`` is uniform over the integers ``[H, M)`` - 28 x 28 (MNIST):
``r in {28, 29, 30}``, ``M = 31``; 32 x 32 (CIFAR-10): ``r in {32, 33, 34}``, ``M = 35``; 16 x 16 (our
synthetic set): ``r in {16, 17}``, ``M = 18``.

3. *Back to the input size* (ours: Xie et al.'s Inception networks take the 331 x 331 image, our backbones
   need their fixed input size): the padded ``M x M`` image is resized back to ``H x W`` bilinearly
   (``align_corners=False``).  Resizing rather than cropping keeps the whole image (a random crop could cut
   off part of the digit); the composite is a random shrink by ``r / M`` and a random shift, the same family
   of transformations as Xie et al.'s.

Randomness: every example of every forward pass draws its own ``r``, ``top`` and ``left`` (Xie et al.'s code
draws one per batch; per example keeps a point's transformation independent of the other points of its
batch) from the module's :class:`torch.Generator`, seeded with ``seed``: the same sequence of forward
passes gives the same outputs (:meth:`RandomResizePad.reseed` starts the stream again), two passes in a
row differ.  The draws happen on the CPU whatever the input's device.  Gradients flow through all three
steps (nearest-neighbour resizing passes each output pixel's gradient to its source pixel), so EoT attacks
(``eot=`` on the gradient attacks, :mod:`robustloss.attacks.base`) differentiate through the defence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustloss.errors import UserError, check_int, check_seed, unknown_choice

#: Xie et al. 2018's sizes: ImageNet inputs of 299 x 299, resized to [299, 331), padded to 331 x 331
XIE_INPUT, XIE_PADDED = 299, 331


def scaled_max_size(image_size: int) -> int:
    """The padded size ``M = round(H * 331 / 299)`` for ``H x H`` inputs (Xie et al.'s ratio; at least ``H + 1``)."""
    h = check_int("image size", image_size, 1)
    return max(h + 1, round(h * XIE_PADDED / XIE_INPUT))


class RandomResizePad(nn.Module):
    """Random resize to ``r x r`` (``r`` uniform in ``[H, M)``), random zero padding to ``M x M``, resize to ``H x H``.

    ``image_size``: the input's ``H`` (= ``W``; square images only); ``max_size``: ``M`` (default
    :func:`scaled_max_size`); ``seed``: the generator's seed.  See the module docstring for the source
    of every step.  Use :func:`randomized` to put it in front of a classifier.
    """

    def __init__(self, image_size: int, *, max_size: int | None = None, seed: int = 0) -> None:
        super().__init__()
        self.image_size = check_int("image size", image_size, 1)
        self.max_size = scaled_max_size(self.image_size) if max_size is None else \
            check_int("max_size", max_size, self.image_size + 1)
        self.seed = check_seed("seed", seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, max_size={self.max_size}, seed={self.seed}"

    def reseed(self, seed: int | None = None) -> None:
        """Start the random stream again from ``seed`` (default: the constructor's)."""
        self.seed = self.seed if seed is None else check_seed("seed", seed)
        self.generator.manual_seed(self.seed)

    def draw(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` draws of ``(r, top, left)`` (CPU int64 tensors): ``r`` uniform over the integers ``[H, M)``,
        ``top`` and ``left`` uniform over the integers ``[0, M - r]`` (the authors' ``random.randint``)."""
        size = torch.randint(self.image_size, self.max_size, (n,), generator=self.generator)
        room = (self.max_size - size + 1).double()
        top = (torch.rand(n, generator=self.generator, dtype=torch.float64) * room).long()
        left = (torch.rand(n, generator=self.generator, dtype=torch.float64) * room).long()
        return size, top, left

    def forward(self, x: Tensor) -> Tensor:
        h, m = self.image_size, self.max_size
        if x.dim() != 4 or x.shape[-2:] != (h, h):
            raise UserError(f"input randomisation expects images of shape (N, C, {h}, {h}), got {tuple(x.shape)}")
        n = x.shape[0]
        if n == 0:
            return x
        size, top, left = self.draw(n)
        pieces, order = [], []
        keys = torch.stack([size, top, left], dim=1)
        for r, t, lft in torch.unique(keys, dim=0).tolist():
            rows = torch.nonzero((keys == torch.tensor([r, t, lft])).all(dim=1)).squeeze(1)
            part = x[rows.to(x.device)]
            if r != h:
                part = F.interpolate(part, size=(r, r), mode="nearest")
            pieces.append(F.pad(part, (lft, m - r - lft, t, m - r - t)))
            order.append(rows)
        padded = torch.cat(pieces)[torch.argsort(torch.cat(order)).to(x.device)]
        return F.interpolate(padded, size=(h, h), mode="bilinear", align_corners=False)


def randomized(model: nn.Module, image_size: int, *, max_size: int | None = None, seed: int = 0) -> nn.Sequential:
    """``nn.Sequential(RandomResizePad(...), model)``: ``model`` behind Xie et al.'s input randomisation.

    A ``Sequential`` whose last layer is the classifier, so attacks still find its objective
    (:func:`robustloss.classifier.locate_classifier`) and its adaptive loss sees the randomised input.
    """
    return nn.Sequential(RandomResizePad(image_size, max_size=max_size, seed=seed), model)


#: the defences an evaluation can wrap around a run's model (``defense=`` of ``evaluate_run``)
DEFENSES = ("randomization",)


def apply_defense(name: str, model: nn.Module, image_size: int, seed: int = 0) -> nn.Module:
    """``model`` wrapped in the defence ``name`` (one of :data:`DEFENSES`), its randomness seeded with ``seed``."""
    if name not in DEFENSES:
        raise unknown_choice("defense", name, DEFENSES)
    return randomized(model, image_size, seed=seed)
