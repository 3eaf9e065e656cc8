"""Projected gradient descent (Madry et al. 2018), L-inf and L2."""

from __future__ import annotations

from robustloss.attacks.base import IterativeAttack


class PGD(IterativeAttack):
    """PGD: ``x_{k+1} = Proj_{B(x, eps)}(x_k + step_size * dir(grad L))`` from a random start.

    ``dir`` is ``sign`` for ``norm="linf"`` and ``g / ||g||_2`` for ``norm="l2"``.
    The loss ``L`` is the objective's adaptive form-1 loss by default (the MMC
    paper, App. B.4: CE for SCE; ``L_MMC(z,y)`` untargeted, ``-L_MMC(z,y_t)`` targeted
    for MMC).  ``eps`` and ``steps`` are required; ``step_size`` defaults to
    ``eps / steps`` (the MMC paper uses 0.01 on MNIST, Fig. 3(b), and 2/255 on
    CIFAR, Sec. 4.3; the PC paper 0.01; the built-in suites set them).  Random start on by default (Madry et al. 2018).

    Call ``PGD(classifier, eps, steps, step_size)(x, y, targets=None)``.
    """

    name = "pgd"
