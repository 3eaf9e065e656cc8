"""The training loop: SGD/Adam/RMSProp with step decay, per-epoch atomic checkpoints, exact resume.

Determinism: model initialisation uses ``torch.manual_seed(seed)``; every epoch
draws its shuffling, augmentation and adversarial-example randomness from
generators seeded by ``(seed, epoch, stream)`` (:func:`robustloss.device.stream_generator`),
so resuming from the checkpoint of epoch ``k`` replays epochs ``k+1..`` exactly
as an uninterrupted run would (on CPU).

Distributed (``torchrun``, :mod:`robustloss.distributed`): the model is wrapped in
``DistributedDataParallel``; ``batch_size`` stays the *global* batch.  Every rank
draws the same permutation (``(seed, epoch, SHUFFLE)``), cuts the same global
batches from it and takes every ``world``-th example of each (DistributedSampler's
split).  Each rank's mean loss is scaled by ``world * n_local / n_global`` before
DDP averages the gradients, so the update is the gradient of the mean loss over
the whole global batch - the same as one process with that batch (also for a
last batch that does not divide evenly), up to float summation order.  BatchNorm
layers normalise over the local batch unless ``sync_bn`` (``SyncBatchNorm``).
Only rank 0 evaluates on the validation set and writes checkpoint and log.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustloss import datasets
from robustloss.classifier import Classifier
from robustloss.device import apply_channels_last, resolve_channels_last, resolve_device, stream_generator
from robustloss.distributed import RankError, World
from robustloss.errors import UserError
from robustloss.io import atomic_write_text
from robustloss.models import build_backbone
from robustloss.objectives import build_objective
from robustloss.training.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from robustloss.training.config import TrainConfig

# random streams (see stream_generator)
SHUFFLE, AUGMENT, ADVERSARIAL = 1, 2, 3


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


def build_classifier(config: TrainConfig) -> Classifier:
    """The untrained model of ``config`` (initialised from ``torch.manual_seed(config.seed)``)."""
    info = datasets.info(config.dataset)
    torch.manual_seed(config.seed)
    backbone = build_backbone(config.model, info.channels, info.image_size, config.model_options)
    feature_dim = int(getattr(backbone, "feature_dim"))
    objective = build_objective(config.objective, info.num_classes, feature_dim, config.objective_options)
    return Classifier(backbone, objective)


#: RMSProp's decay of the mean square, ``alpha`` (torch's default, as Tieleman & Hinton's lecture 6e uses 0.9-0.99;
#: the reproducibility report, Table 2, states no setting)
RMSPROP_ALPHA = 0.99
#: RMSProp's ``eps`` added to the root mean square (torch's default)
RMSPROP_EPS = 1e-8


def build_optimizer(config: TrainConfig, model: Classifier) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer of ``config.optimizer`` and its step-decay schedule.

    ``sgd``: momentum SGD (``config.momentum``); ``adam``: Adam with torch's defaults; ``rmsprop``: with the
    gradient ``g`` (weight decay added), ``v <- alpha v + (1 - alpha) g^2`` (``v`` starts at 0) and
    ``theta <- theta - lr g / (sqrt(v) + eps)``, ``alpha`` = :data:`RMSPROP_ALPHA`, ``eps`` = :data:`RMSPROP_EPS`,
    no momentum (``config.momentum`` applies to ``sgd`` only).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    elif config.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=config.lr, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS,
                                  weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(config.lr_milestones), gamma=config.lr_gamma)
    return opt, sched


def evaluate_clean(model: Classifier, x: Tensor, y: Tensor, device: torch.device,
                   batch_size: int = 1000) -> dict[str, float]:
    """Mean training loss and accuracy on ``(x, y)`` in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            z = model.features(xb)
            total_loss += float(model.objective.loss(z, yb)) * len(xb)
            correct += int((model.objective.logits(z).argmax(1) == yb).sum())
    model.train(was_training)
    n = max(len(x), 1)
    return {"loss": total_loss / n, "acc": correct / n}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


class _Step(nn.Module):
    """``(x, y) -> (mean loss * scale, z)``: the training forward as one module, so DDP can wrap it."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, y: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        if x.shape[0] == 0:   # this rank has no rows in a short last batch: contribute a zero gradient
            zero = sum((p.sum() for p in self.model.parameters() if p.requires_grad), torch.zeros((), device=x.device))
            return zero * 0.0, x.new_zeros((0, 1))
        z = self.model.features(x)
        return self.model.objective.loss(z, y) * scale, z


class Trainer:
    """Trains ``config`` into ``run_dir``; resumes from ``run_dir/checkpoint.pt`` when asked.

    ``world`` (default: one process) makes it one rank of a ``torchrun`` job;
    ``sync_bn`` then converts BatchNorm layers to ``SyncBatchNorm``.
    ``channels_last`` (a runtime option, not part of the config): store the weights
    channels-last; ``None`` decides by :func:`robustloss.device.resolve_channels_last`
    (off unless asked: opt-in, see there).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, device: str = "auto",
                 progress: bool = True, log: Callable[[str], None] | None = None,
                 world: World | None = None, sync_bn: bool = False, channels_last: bool | None = None) -> None:
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.world = world if world is not None else World()
        if self.world.active and config.batch_size < self.world.size:
            raise UserError(f"batch size {config.batch_size} is smaller than the {self.world.size} ranks; "
                            "the batch size is global (split over the ranks): use a batch size >= the world size")
        if sync_bn and self.device.type != "cuda":
            raise RankError("--sync-bn needs CUDA: torch's SyncBatchNorm runs only on GPUs; "
                            "leave it out on the CPU")
        self.progress = progress and self.world.is_main
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.model = build_classifier(config).to(self.device)
        self.channels_last = resolve_channels_last(channels_last, self.device, self.model)
        apply_channels_last(self.model, self.channels_last)
        self.ddp: nn.Module | None = None
        if self.world.active:
            if sync_bn:
                converted = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
                assert converted is self.model   # a Classifier is not itself a BatchNorm layer
            # every rank built the same initial weights (seeded); DDP also broadcasts rank 0's at construction
            self.ddp = nn.parallel.DistributedDataParallel(
                _Step(self.model), device_ids=[self.device] if self.device.type == "cuda" else None)
        self.optimizer, self.scheduler = build_optimizer(config, self.model)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self.adversary = None
        if config.adversarial is not None:
            from robustloss.training.adversarial import TrainingAdversary

            self.adversary = TrainingAdversary(config.adversarial, self.model, amp=config.amp)

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(),
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "complete": self.epoch >= self.config.epochs,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if not self.config.matches(state["config"]):
            raise UserError(f"checkpoint in {self.run_dir} is from another configuration; "
                            "use a new --out folder or --force to start over")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise UserError(f"checkpoint in {self.run_dir} does not fit the model: {str(exc).splitlines()[0]}") from None
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    def resume(self) -> bool:
        """Load the run folder's checkpoint if there is one; ``True`` if something was loaded."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        self.load_state(load_checkpoint(path, map_location=self.device))
        return True

    def save(self) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(self.run_dir / CHECKPOINT, self.state())
        atomic_write_text(self.run_dir / "log.jsonl",
                          "".join(_json_line(row) for row in self.history))

    # ------------------------------------------------------------------ loop
    def load_data(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The training and validation sets ``(x_train, y_train, x_val, y_val)``, loaded once."""
        if self.data is None:
            cfg = self.config
            x_train, y_train = datasets.load(cfg.dataset, "train", cfg.data_dir)
            if cfg.train_limit is not None:
                x_train, y_train = x_train[:cfg.train_limit], y_train[:cfg.train_limit]
            x_val, y_val = datasets.load(cfg.dataset, "val", cfg.data_dir)
            self.data = (x_train, y_train, x_val, y_val)
        return self.data

    def fit(self) -> Classifier:
        cfg = self.config
        x_train, y_train, x_val, y_val = self.load_data()
        augment = cfg.augment if cfg.augment is not None else cfg.dataset.startswith("cifar")
        while self.epoch < cfg.epochs:
            row = self.train_epoch(self.epoch, x_train, y_train, augment)
            # rank 0 alone validates and writes; the others wait for it at the barrier
            val = evaluate_clean(self.model, x_val, y_val, self.device) if self.world.is_main else \
                {"loss": float("nan"), "acc": float("nan")}
            row.update({"val_loss": val["loss"], "val_acc": val["acc"]})
            self.epoch += 1
            self.history.append(row)
            self.save()
            self.world.barrier()
            if self.world.is_main:
                    self.log(f"epoch {row['epoch']}/{cfg.epochs}: loss {row['train_loss']:.4f} "
                         f"acc {row['train_acc']:.4f} val_acc {row['val_acc']:.4f} "
                         f"({row['time_s']:.1f} s, {row['images_per_s']:.0f} img/s)")
        self.model.eval()
        return self.model

    def train_epoch(self, epoch: int, x: Tensor, y: Tensor, augment: bool) -> dict[str, Any]:
        cfg, model, dev = self.config, self.model, self.device
        model.train()
        model.objective.on_epoch_start(epoch, cfg.epochs)
        order = torch.randperm(len(x), generator=stream_generator(cfg.seed, epoch, SHUFFLE))
        aug_gen = stream_generator(cfg.seed, epoch, AUGMENT)
        if self.adversary is not None:
            self.adversary.reseed(stream_generator(cfg.seed, epoch, ADVERSARIAL))
        n_batches = math.ceil(len(x) / cfg.batch_size)
        total_loss, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        bar = tqdm(total=len(x), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="img", leave=False,
                   disable=None if self.progress else True,  # None: only on a terminal
                   file=sys.stderr, dynamic_ncols=True)
        world = self.world
        for b in range(n_batches):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if augment:   # drawn for the whole global batch, so every rank's generator stays in step
                xb = datasets.augment(xb, aug_gen)
            n_global = len(idx)
            if world.active:   # this rank's share of the global batch
                xb, yb = xb[world.rank::world.size], yb[world.rank::world.size]
                ex_seeds = _example_seeds(cfg.seed, epoch, idx[world.rank::world.size])
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            if self.adversary is not None:
                if world.active:
                    xb, yb = self.adversary(xb, yb, example_seeds=ex_seeds)
                else:
                    xb, yb = self.adversary(xb, yb)
            if self.ddp is not None:
                # DDP averages the ranks' gradients: scaled by this rank's share of the global batch,
                # the average is the gradient of the mean loss over the global batch
                scale = world.size * len(idx[world.rank::world.size]) / n_global
                loss, z = self.ddp(xb, yb, scale)
            else:
                z = model.features(xb)
                loss = model.objective.loss(z, yb)
            if world.active:   # one process diverging stops all of them
                finite = world.all_sum([0.0 if bool(torch.isfinite(loss)) else 1.0])[0] == 0
            else:
                finite = bool(torch.isfinite(loss))
            if not finite:
                bar.close()
                kept = (f"the checkpoint of epoch {epoch} in {self.run_dir} is intact" if epoch > 0 else
                        "no checkpoint was written: it diverged in the first epoch")
                raise TrainingDiverged(f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {b + 1}; "
                                       f"training stopped ({kept}) - try a lower --lr (now {cfg.lr:g})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if world.active:
                zs, ys = world.gather_rows(z.detach(), yb)   # e.g. center-loss updates see the global batch
                model.objective.on_batch_end(zs, ys)
                loss_mean = float(loss.detach()) / scale if len(yb) else 0.0
            else:
                model.objective.on_batch_end(z.detach(), yb)
                loss_mean = float(loss.detach())
            with torch.no_grad():
                total_loss += loss_mean * len(yb)
                if len(yb):
                    correct += int((model.objective.logits(z.detach()).argmax(1) == yb).sum())
                seen += len(yb)
            bar.update(len(idx))
            if b % 20 == 0 or b == n_batches - 1:
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                                img_s=f"{seen / max(elapsed, 1e-9):.0f}")
        bar.close()
        self.scheduler.step()
        if world.active:
            total_loss, correct_f, seen_f = world.all_sum([total_loss, float(correct), float(seen)])
            correct, seen = int(correct_f), int(seen_f)
        elapsed = time.perf_counter() - start
        return {"epoch": epoch + 1, "train_loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
                "lr": self.optimizer.param_groups[0]["lr"], "time_s": elapsed,
                "images_per_s": seen / max(elapsed, 1e-9)}


def _example_seeds(seed: int, epoch: int, indices: Tensor) -> Tensor:
    """A seed per training example and epoch for adversarial training under DDP (independent of the rank)."""
    base = int(stream_generator(seed, epoch, ADVERSARIAL).initial_seed())
    return (indices.long() * 0x5851F42D4C957F2D + base) & 0x3FFFFFFFFFFFFFFF


def _json_line(row: dict[str, Any]) -> str:
    import json

    return json.dumps(row, sort_keys=True) + "\n"
