"""Adam on a batch of perturbations, one independent optimiser per row (C&W, SPSA)."""

from __future__ import annotations

from torch import Tensor


class Adam:
    r"""Adam (Kingma & Ba 2015, "Adam: a method for stochastic optimization", Algorithm 1) per row of a batch.

    For the rows ``r`` of one :meth:`step`, with gradient ``g`` and step count ``t``::

        m_t = beta1 m_{t-1} + (1 - beta1) g
        v_t = beta2 v_{t-1} + (1 - beta2) g^2
        update = lr * (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)

    elementwise, so every row (example) has its own moments; ``theta - update``
    descends, ``theta + update`` ascends.  ``eps`` is added outside the square
    root of the bias-corrected ``v``, as in Algorithm 1 and ``torch.optim.Adam``.
    Defaults ``betas=(0.9, 0.999)``, ``eps=1e-8``: Algorithm 1's.

    Attacks update only the rows still running: a row may leave the set of
    updated rows and is then never updated again, but it may not join late -
    all rows share one step count ``t`` (the number of calls of :meth:`step`),
    which is each row's own count exactly when rows only ever leave.
    """

    def __init__(self, like: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.lr = lr
        self.betas = betas
        self.eps = eps
        #: first and second moment estimates, shaped like the optimised batch
        self.m = like.new_zeros(like.shape)
        self.v = like.new_zeros(like.shape)
        #: steps taken (shared by all rows)
        self.count = 0

    def step(self, rows: Tensor | list[int], grad: Tensor) -> Tensor:
        """Update the moments of ``rows`` with their gradient ``grad``; returns their ``update``."""
        beta1, beta2 = self.betas
        self.count += 1
        m = beta1 * self.m[rows] + (1 - beta1) * grad
        v = beta2 * self.v[rows] + (1 - beta2) * grad * grad
        self.m[rows] = m
        self.v[rows] = v
        m_hat = m / (1 - beta1 ** self.count)
        v_hat = v / (1 - beta2 ** self.count)
        return self.lr * m_hat / (v_hat.sqrt() + self.eps)
