"""The full configuration of a training run (saved in the run folder and every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from robustloss.errors import UserError, check_int, check_range, unknown_choice

OPTIMIZERS = ("sgd", "adam")
AT_METHODS = ("pgd", "fgsm")
AT_MIXES = ("adv", "half")


@dataclass
class AdversarialConfig:
    """Adversarial training (AT) settings; see :mod:`robustloss.training.adversarial`.

    Defaults: PGD-10, eps 8/255, step 2/255, targeted (seed 000 Sec. 4.1, "AT_10^tar").
    """

    method: str = "pgd"          # "pgd" or "fgsm"
    eps: float = 8 / 255
    steps: int = 10
    step_size: float = 2 / 255
    targeted: bool = True
    random_start: bool = True
    eps_min: float = 0.0         # FGSM-AT draws eps uniformly from [eps_min, eps] (seed 004)
    mix: str = "adv"             # "adv": adversarial only; "half": 1:1 clean + adversarial
    loss: str = "adaptive"       # attack loss used to craft training examples

    def validate(self) -> AdversarialConfig:
        """Check every field (a :class:`UserError` names the first bad one)."""
        from robustloss.attacks.losses import NAMED_LOSSES

        if self.method not in AT_METHODS:
            raise unknown_choice("adversarial training method", self.method, AT_METHODS)
        if self.mix not in AT_MIXES:
            raise unknown_choice("adversarial mix", self.mix, AT_MIXES)
        if self.loss not in NAMED_LOSSES:
            raise unknown_choice("attack loss", self.loss, NAMED_LOSSES)
        self.eps = check_range("adversarial eps", self.eps, low=0.0)
        self.eps_min = check_range("adversarial eps_min", self.eps_min, low=0.0, high=self.eps)
        self.step_size = check_range("adversarial step_size", self.step_size, low=0.0)
        self.steps = check_int("adversarial steps", self.steps, 1)
        return self


@dataclass
class TrainConfig:
    """Everything that determines a training run; two runs with equal configs give equal weights (CPU)."""

    dataset: str = "mnist"
    model: str = "lenet5"
    model_options: dict[str, Any] = field(default_factory=dict)
    objective: str = "sce"
    objective_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01             # seed 000 Sec. 4.1
    momentum: float = 0.9        # seed 000 Sec. 4.1 ("momentum SGD")
    weight_decay: float = 1e-4   # our default (not stated in seed 000)
    lr_milestones: list[int] = field(default_factory=list)  # e.g. [100, 150] for CIFAR (seed 000)
    lr_gamma: float = 0.1        # seed 000 Sec. 4.1
    seed: int = 0
    augment: bool | None = None  # None: on for CIFAR, off otherwise
    train_limit: int | None = None  # use only the first N training images (quick runs, tests)
    data_dir: str | None = None
    adversarial: AdversarialConfig | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Check every field; complete and type the model/objective options (in place)."""
        from robustloss import datasets
        from robustloss.models import MODELS
        from robustloss.objectives import OBJECTIVES

        datasets.info(self.dataset)
        self.model_options = MODELS.options(self.model, self.model_options, complete=True)
        self.objective_options = OBJECTIVES.options(self.objective, self.objective_options, complete=True)
        self.lr_milestones = [int(m) for m in self.lr_milestones]
        if self.optimizer not in OPTIMIZERS:
            raise unknown_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_range("lr", self.lr, low=0.0, low_inclusive=False)
        check_range("momentum", self.momentum, low=0.0, high=1.0, high_inclusive=False)
        check_range("weight_decay", self.weight_decay, low=0.0)
        if self.train_limit is not None and self.train_limit < 1:
            raise UserError(f"train_limit must be >= 1, got {self.train_limit}")
        if self.adversarial is not None:
            self.adversarial.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown config keys: {', '.join(sorted(unknown))}")
        data = dict(data)
        if data.get("adversarial") is not None:
            data["adversarial"] = AdversarialConfig(**data["adversarial"])
        return cls(**data)
