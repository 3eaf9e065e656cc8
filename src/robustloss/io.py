"""Files: atomic writes (a temporary file in the same folder, then a rename) and strict JSON reads."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustloss.errors import UserError


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp)`` and atomically rename ``tmp`` to ``path``.

    A reader sees either the old file or the complete new one, never a partial
    write: ``tmp`` is flushed to disk (``fsync``) before the rename replaces
    ``path``, and the folder is synced after it.  If ``writer`` (or the sync)
    fails, ``path`` is untouched and ``tmp`` is removed before the error
    propagates; only a killed process can leave a stray ``.<name>.*.tmp``.  The
    new file gets the usual permissions (``0666`` minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # pragma: no cover - a 32-bit random name collision
            continue
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - never hide the writer's own error
            pass
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats (NaN, inf) replaced by ``None``, so the JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (non-finite floats become ``null``), atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


class _NonFinite(ValueError):
    """``NaN``/``Infinity`` in a JSON file (Python's json accepts them; strict JSON does not)."""


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def read_json(path: str | Path, what: str, kind: type = dict) -> Any:
    """The strict-JSON content of ``path``, which must be a JSON ``kind`` (``dict``: object, ``list``: array).

    Every way a user's file can be wrong is a one-line :class:`UserError` naming
    ``what`` (e.g. ``"suite file"``) and the path: unreadable, not UTF-8 (a
    byte-order mark is accepted), malformed, the non-standard constants ``NaN`` /
    ``Infinity`` (which would otherwise reach integer options as floats), nested
    too deeply to parse, or a different top-level type.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") \
            from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        raise UserError(f"{what} {path} holds {exc}, which JSON does not allow; write a finite number") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") \
            from None
    except RecursionError:
        raise UserError(f"{what} {path} is nested too deeply to read") from None
    if not isinstance(data, kind):
        expected = _JSON_TYPES.get(kind, kind.__name__)
        got = _JSON_TYPES.get(type(data), "null" if data is None else type(data).__name__)
        raise UserError(f"{what} {path} must hold a JSON {expected}, got a JSON {got}")
    return data
