"""The full configuration of a training run (saved in the run folder and every checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from robustloss.errors import UserError, check_int, check_range, check_seed, unknown_choice

#: "sgd": momentum SGD (the MMC paper, Sec. 4.1); "adam"; "rmsprop" (the reproducibility report, Table 2)
OPTIMIZERS = ("sgd", "adam", "rmsprop")
AT_METHODS = ("pgd", "fgsm")
AT_MIXES = ("adv", "half")


@dataclass
class AdversarialConfig:
    """Adversarial training (AT) settings; see :mod:`robustloss.training.adversarial`.

    Defaults: PGD-10, eps 8/255, targeted (the MMC paper, Sec. 4.1, "AT_10^tar"); step
    2/255 (not stated for AT; the step of the paper's evaluation PGD, Sec. 4.3).
    """

    method: str = "pgd"          # "pgd" or "fgsm"
    eps: float = 8 / 255
    steps: int = 10
    step_size: float = 2 / 255
    targeted: bool = True
    random_start: bool = True
    eps_min: float = 0.0         # FGSM-AT draws eps uniformly from [eps_min, eps] (PC paper)
    mix: str = "adv"             # "adv": adversarial only; "half": 1:1 clean + adversarial
    loss: str = "adaptive"       # attack loss used to craft training examples

    def validate(self) -> AdversarialConfig:
        """Check every field (a :class:`UserError` names the first bad one)."""
        from robustloss.attacks.losses import NAMED_LOSSES

        for name in ("method", "mix", "loss"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"adversarial {name} must be a string, got {getattr(self, name)!r}")
        for name in ("targeted", "random_start"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"adversarial {name} must be true or false, got {getattr(self, name)!r}")
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
    lr: float = 0.01             # the MMC paper, Sec. 4.1
    momentum: float = 0.9        # MMC paper Sec. 4.1 "momentum SGD"; 0.9: reproducibility report, Sec. 3 (sgd only)
    weight_decay: float = 1e-4   # our default (not stated in the MMC paper)
    # epochs after which lr *= lr_gamma: positive and strictly increasing, e.g. [100, 150] for CIFAR
    # (the MMC paper); a milestone beyond ``epochs`` is never reached
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1        # the MMC paper, Sec. 4.1; a decay factor in (0, 1] (1: no decay)
    seed: int = 0                # in [0, 2**63 - 1]: torch's generator takes 64 bits, headroom for offsets
    augment: bool | None = None  # None: on for CIFAR, off otherwise
    train_limit: int | None = None  # use only the first N training images (quick runs, tests)
    data_dir: str | None = None
    adversarial: AdversarialConfig | None = None
    # mixed precision of the forward passes that *craft* adversarial training examples: None (fp32, the
    # default: every run before this option), "bf16" or "fp16" (torch.autocast; the attack losses, the
    # training step and every evaluation stay fp32). Part of the config (and of a run's cache key when
    # set): it changes the training examples, hence the weights. Fast only with native low-precision kernels
    # (AVX-512 BF16 / AMX, GPUs); fp16 input gradients may underflow where bf16's range does not.
    amp: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Check every field; complete and type the model/objective options (in place)."""
        from robustloss import datasets
        from robustloss.models import MODELS
        from robustloss.objectives import OBJECTIVES

        for name in ("dataset", "model", "objective", "optimizer"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"{name} must be a name, got {getattr(self, name)!r}")
        datasets.info(self.dataset)
        self.model_options = MODELS.options(self.model, self.model_options, complete=True)
        self.objective_options = OBJECTIVES.options(self.objective, self.objective_options, complete=True)
        if self.optimizer not in OPTIMIZERS:
            raise unknown_choice("optimizer", self.optimizer, OPTIMIZERS)
        self.epochs = check_int("epochs", self.epochs, 1)
        self.batch_size = check_int("batch_size", self.batch_size, 1)
        if self.train_limit is not None:
            self.train_limit = check_int("train_limit", self.train_limit, 1)
        self.seed = check_seed("seed", self.seed)
        self.lr = check_range("lr", self.lr, low=0.0, low_inclusive=False)
        self.momentum = check_range("momentum", self.momentum, low=0.0, high=1.0, high_inclusive=False)
        self.weight_decay = check_range("weight_decay", self.weight_decay, low=0.0)
        self.lr_gamma = check_range("lr_gamma", self.lr_gamma, low=0.0, low_inclusive=False, high=1.0)
        self.lr_milestones = _milestones(self.lr_milestones)
        if self.augment is not None and not isinstance(self.augment, bool):
            raise UserError(f"augment must be true, false or null (the dataset's default), got {self.augment!r}")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir):
            raise UserError(f"data_dir must be a non-empty path, got {self.data_dir!r}")
        if self.adversarial is not None:
            self.adversarial.validate()
        if self.amp is not None:
            from robustloss.device import amp_dtype

            amp_dtype(self.amp)   # a UserError naming the choices
            if self.adversarial is None:
                raise UserError(f"amp={self.amp!r} sets the precision of crafting adversarial training examples; "
                                "it needs adversarial training (--at pgd or fgsm)")
        return self

    def matches(self, stored: Mapping[str, Any]) -> bool:
        """``True`` if ``stored`` (a checkpoint's or ``config.json``'s dict) describes this same run.

        Keys missing from ``stored`` take their defaults (a run saved before an option
        existed matches a config that leaves it at its default); an invalid dict matches nothing.
        """
        try:
            other = TrainConfig.from_dict(stored)
        except (UserError, TypeError):
            return False
        return other.to_dict() == self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config stored by :meth:`to_dict` (e.g. a run's ``config.json``), validated."""
        if not isinstance(data, Mapping):
            raise UserError(f"a training config must be a JSON object, got {type(data).__name__}")
        data = dict(_known_keys("config", data, cls))
        adversarial = data.get("adversarial")
        if adversarial is not None:
            if not isinstance(adversarial, Mapping):
                raise UserError(f"config key 'adversarial' must be an object or null, got {adversarial!r}")
            data["adversarial"] = AdversarialConfig(**_known_keys("adversarial config", adversarial,
                                                                  AdversarialConfig))
        return cls(**data)


def _known_keys(what: str, data: Mapping[str, Any], cls: type) -> Mapping[str, Any]:
    """``data`` if its keys are all fields of the dataclass ``cls``, else a :class:`UserError` listing them."""
    valid = [f.name for f in fields(cls)]
    unknown = set(data) - set(valid)
    if unknown:
        raise UserError(f"unknown {what} keys: {', '.join(sorted(map(str, unknown)))}; valid keys: {', '.join(valid)}")
    return data


def _milestones(value: object) -> list[int]:
    """``lr_milestones`` as a list of positive, strictly increasing epoch numbers."""
    if not isinstance(value, (list, tuple)):
        raise UserError(f"lr_milestones must be a list of epochs, got {value!r}")
    out = [check_int("each lr milestone", m, 1) for m in value]
    if any(b <= a for a, b in zip(out, out[1:])):
        raise UserError(f"lr_milestones must be strictly increasing epochs >= 1, got {out}")
    return out
