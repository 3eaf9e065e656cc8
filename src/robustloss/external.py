"""Any PyTorch model in: an external ``nn.Module`` made into a model robustloss can evaluate.

``robustloss evaluate --model module.path:factory [--weights FILE] [--mean .. --std ..]
[--output-key KEY] --dataset NAME --out DIR`` evaluates a model that is not one of
our run folders.  The contract: the model maps inputs in ``[0, 1]`` (N x C x H x W,
the dataset's layout) to logits ``(N, classes)``.  What this module adds around it:

* ``module.path:factory`` is imported (the module must be importable, e.g. on
  ``PYTHONPATH``); ``factory`` is an ``nn.Module`` instance, or a callable (a
  class or function) that returns one when called without arguments.
* ``--weights FILE`` is loaded with ``torch.load(..., weights_only=True)`` (no
  arbitrary code from the file runs): a state dict, or a dict holding one under
  ``state_dict`` / ``model``; a ``module.`` prefix on every key (DataParallel) is
  dropped.  Keys must match exactly (``strict``).
* ``--mean`` / ``--std`` (one value per channel) declare the model's input
  normalisation; it is applied *inside* the evaluated model,
  ``model((x - mean) / std)``, so attacks still work on ``[0, 1]`` inputs with
  the dataset's epsilon.
* ``--output-key KEY`` picks the logits from a model that returns a dict (key),
  a tuple or list (integer index) or an object with attributes (e.g. Hugging
  Face's ``ModelOutput.logits``).
* Eval mode is forced and verified: every submodule must report
  ``training == False`` after ``.eval()``, and two forward passes of the same
  batch must agree (:func:`check_deterministic`).  A randomised model (dropout
  left on, noise injection, random input transforms) fails with an error saying
  that it needs Expectation over Transformation (EoT) attacks, which the
  evaluation does not run - its robust accuracy would be overstated.
  Parameters are frozen (``requires_grad_(False)``): attacks differentiate
  with respect to the input only.

Every failure is one :class:`UserError` line.  There is no objective behind an
external model, so an attack asked for the adaptive loss falls back to its
logit form (CE, or the C&W margin for ``adaptive-margin``;
:func:`robustloss.attacks.losses.resolve_loss`) and the evaluation report says
that the attacks were non-adaptive.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustloss.errors import UserError

_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``"0.5,0.25"`` -> ``(0.5, 0.25)`` (``None`` stays ``None``); anything else is a :class:`UserError`."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{what} must be comma-separated numbers (one per channel), got {text!r}") from None
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise UserError(f"{what} must be finite numbers, got {text!r}")
    return values


@dataclass(frozen=True)
class ExternalSpec:
    """What the user declared about an external model (``--model``, ``--weights``, ``--mean``, ...)."""

    #: ``module.path:factory``
    target: str
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    output_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not _TARGET.fullmatch(self.target):
            raise UserError(f"--model must be 'module.path:factory' (a Python module and a name in it), "
                            f"got {self.target!r}")
        if (self.mean is None) != (self.std is None):
            raise UserError("--mean and --std go together: give both (one value per channel) or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise UserError(f"--mean has {len(self.mean)} values but --std has {len(self.std)}; "
                                "give one value per channel to both")
            if any(s <= 0 for s in self.std):
                raise UserError(f"--std values must be > 0, got {','.join(map(str, self.std))}")
        if self.output_key is not None and not self.output_key.strip():
            raise UserError("--output-key must not be empty")
        if self.weights is not None and not Path(self.weights).is_file():
            raise UserError(f"weights file {self.weights} not found")


class ExternalModel(nn.Module):
    """``logits = select(model((x - mean) / std))``: the declared preprocessing and output key around a model.

    ``mean``/``std`` of shape ``(C,)`` broadcast over ``N x C x H x W`` inputs;
    without them the input goes in unchanged, without ``key`` the output must be
    the logits tensor itself.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, model: nn.Module, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None, key: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.key = key
        self.normalize = mean is not None and std is not None
        self.register_buffer("mean", torch.tensor(mean if mean is not None else (0.0,)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std if std is not None else (1.0,)).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.normalize:
            if x.dim() != 4 or self.mean.shape[1] not in (1, x.shape[1]):
                raise UserError(f"--mean/--std give {self.mean.shape[1]} channel(s) but the inputs have shape "
                                f"{tuple(x.shape)}; give one value per input channel")
            x = (x - self.mean) / self.std
        return select_output(self.model(x), self.key)


def select_output(out: Any, key: str | None) -> Tensor:
    """The logits in a model's output: ``out`` itself, or its entry/index/attribute ``key``."""
    if key is None:
        if isinstance(out, Tensor):
            return out
        kind = (f"a dict with keys {', '.join(map(str, list(out)[:8]))}" if isinstance(out, dict)
                else f"a {type(out).__name__}")
        raise UserError(f"the model returns {kind}, not a logits tensor; name the logits with --output-key "
                        "(a dict key, a tuple index or an attribute)")
    if isinstance(out, dict):
        if key not in out:
            raise UserError(f"--output-key {key!r} is not in the model's output dict (keys: "
                            f"{', '.join(map(str, list(out)[:8]))})")
        chosen = out[key]
    elif isinstance(out, (tuple, list)):
        if not re.fullmatch(r"-?\d+", key) or not -len(out) <= int(key) < len(out):
            raise UserError(f"the model returns a {type(out).__name__} of {len(out)} items; --output-key must "
                            f"be an index in 0..{len(out) - 1}, got {key!r}")
        chosen = out[int(key)]
    elif hasattr(out, key):
        chosen = getattr(out, key)
    else:
        raise UserError(f"--output-key {key!r}: the model's output ({type(out).__name__}) has no such entry "
                        "or attribute")
    if not isinstance(chosen, Tensor):
        raise UserError(f"--output-key {key!r} selects a {type(chosen).__name__}, not a logits tensor")
    return chosen


def import_target(target: str) -> Any:
    """The object ``factory`` of ``module.path:factory`` (dotted attributes allowed after the colon)."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:   # ModuleNotFoundError, SyntaxError, or whatever the module raises on import
        raise UserError(f"--model {target}: cannot import module {module_name!r} ({_first_line(exc)}); "
                        "is it on PYTHONPATH?") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"--model {target}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def build_module(target: str) -> nn.Module:
    """The ``nn.Module`` that ``module.path:factory`` is, or returns when called without arguments."""
    obj = import_target(target)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise UserError(f"--model {target} is a {type(obj).__name__}, neither a torch.nn.Module nor a "
                            "function or class returning one")
        try:
            obj = obj()
        except Exception as exc:
            raise UserError(f"--model {target}: calling it without arguments failed ({_first_line(exc)})") from None
        if not isinstance(obj, nn.Module):
            raise UserError(f"--model {target} returned a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def _state_dict(obj: Any, path: str) -> dict[str, Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise UserError(f"weights file {path} holds no state dict (a dict of tensors, possibly under "
                        "'state_dict' or 'model')")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _listing(keys: list[str], limit: int = 3) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_weights(model: nn.Module, path: str, target: str) -> None:
    """Load the state dict in ``path`` into ``model`` (``weights_only=True``, strict); one-line errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # not a torch file, or a pickle that weights_only refuses
        raise UserError(f"cannot load weights {path} with weights_only=True ({_first_line(exc)})") from None
    state = _state_dict(state, path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = ([f"missing keys {_listing(missing)}"] if missing else []) + \
        ([f"unexpected keys {_listing(unexpected)}"] if unexpected else []) + \
        ([f"shape mismatch {_listing(wrong, 2)}"] if wrong else [])
    if problems:
        raise UserError(f"weights {path} do not fit {target}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise UserError(f"weights {path} do not fit {target}: {_first_line(exc)}") from None


def check_deterministic(model: nn.Module, x: Tensor, target: str) -> Tensor:
    """Force eval mode, verify it, and check two forward passes of ``x`` agree; returns the logits.

    Tolerance: ``1e-5 * (1 + max |logit|)`` - a deterministic model gives the
    same numbers for the same batch (float kernels are deterministic on a
    fixed batch), a randomised one differs by far more.
    """
    model.eval()
    still = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if still:
        raise UserError(f"--model {target}: {still[0]} stays in training mode after .eval(); evaluation needs "
                        "eval mode")
    with torch.no_grad():
        first = model(x)
        second = model(x)
    if first.dim() != 2:
        raise UserError(f"--model {target} returns shape {tuple(first.shape)} for inputs {tuple(x.shape)}; "
                        "expected logits (N, classes)")
    gap = float((first - second).abs().max()) if first.numel() else 0.0
    if not gap <= 1e-5 * (1 + float(first.abs().max())):
        raise UserError(f"--model {target} is randomised: two forward passes of the same inputs in eval mode differ "
                        f"(by up to {gap:.3g}); a randomised model needs Expectation over Transformation (EoT) "
                        "attacks, which this evaluation does not run - make it deterministic in eval mode")
    return first


def describe(spec: ExternalSpec) -> dict[str, Any]:
    """The external model as JSON: what was declared, and the weights file's SHA-256 (results are tied to it)."""
    out: dict[str, Any] = {"external": spec.target, "weights": spec.weights, "weights_sha256": None,
                           "mean": list(spec.mean) if spec.mean else None,
                           "std": list(spec.std) if spec.std else None, "output_key": spec.output_key}
    if spec.weights is not None:
        digest = hashlib.sha256()
        with open(spec.weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out["weights_sha256"] = digest.hexdigest()
    return out


def load_external(spec: ExternalSpec, probe: Tensor, device: torch.device | str = "cpu") -> ExternalModel:
    """The external model of ``spec``, weights loaded, wrapped, frozen, in verified eval mode, on ``device``.

    ``probe`` is a small batch of the dataset (inputs in [0, 1]) used for the
    output and determinism checks.
    """
    module = build_module(spec.target)
    if spec.weights is not None:
        load_weights(module, spec.weights, spec.target)
    model = ExternalModel(module, spec.mean, spec.std, spec.output_key).to(device)
    model.requires_grad_(False)
    try:
        check_deterministic(model, probe.to(device), spec.target)
    except UserError:
        raise
    except Exception as exc:   # the user's forward failed on the dataset's inputs
        raise UserError(f"--model {spec.target} failed on inputs of shape {tuple(probe.shape)} "
                        f"({_first_line(exc)})") from None
    return model
