"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

``weights_only`` loading never runs code from the file: a checkpoint that names
other Python objects (a pickle payload, a custom class) is refused as such, and
one whose ``model`` entry is not a state dict (parameter names -> tensors) is
refused before anything is built from it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from robustloss.errors import UserError
from robustloss.io import atomic_write

CHECKPOINT = "checkpoint.pt"

# torch's messages when weights_only refuses an object (rather than a malformed file): a blocked or
# not-allowlisted global, a call or object construction it does not allow
_FOREIGN_OBJECT = re.compile(r"unsupported global|reduce for unrecognized function|"
                             r"Can only (?:create new object|build)|must be \S+ to load", re.IGNORECASE)
_GLOBAL_NAME = re.compile(r"\bGLOBAL ([\w.]+)")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file + rename).

    The state is serialised in memory first and written with plain file I/O, so a
    full disk or a read-only folder is an ``OSError`` naming the file, not torch's
    zip-writer ``RuntimeError``.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)

    def write(tmp: Path) -> None:
        tmp.write_bytes(buffer.getbuffer())

    atomic_write(path, write)


def _load_failure(path: Path, exc: Exception) -> UserError:
    message = str(exc)
    foreign = _FOREIGN_OBJECT.search(message) if "Weights only load failed" in message else None
    if foreign is not None:
        name = _GLOBAL_NAME.search(message)
        what = f" ({name.group(1)})" if name else ""
        return UserError(f"checkpoint {path} holds objects that are not plain tensors{what} and was not loaded "
                         "(only weights are read, so that a file cannot run code)")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    reason = (lines[-2] if "Weights only load failed" in message and len(lines) >= 2 else
              lines[0] if lines else type(exc).__name__)
    return UserError(f"checkpoint {path} is truncated or corrupt ({reason[:120]})")


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; anything but a robustloss checkpoint is a one-line :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise _load_failure(path, exc) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"checkpoint {path} is not a robustloss checkpoint (missing model/config)")
    if not _is_state_dict(state["model"]):
        raise UserError(f"checkpoint {path} is not a robustloss checkpoint: its 'model' entry is not a state dict "
                        f"(parameter names -> tensors) but {type(state['model']).__name__}")
    if not isinstance(state["config"], dict):
        raise UserError(f"checkpoint {path} is not a robustloss checkpoint: its 'config' entry is not a dict")
    return state
