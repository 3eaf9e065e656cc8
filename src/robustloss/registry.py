"""Name -> constructor registries with typed ``key=value`` options.

Objectives, backbones and attacks are chosen by name on the command line and
in run configs; their hyperparameters travel as a ``{key: value}`` dict whose
types are taken from the constructor's defaults.  Unknown names and options are
:class:`~robustloss.errors.UserError` s that list the valid choices.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from robustloss.errors import UserError, unknown_choice

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(key: str, raw: Any, default: Any) -> Any:
    """Convert a string option to the type of its default (bool, int, float, str)."""
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            low = raw.lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float) or default is None:
            try:
                return float(raw) if default is not None or raw.replace(".", "", 1).lstrip("-").isdigit() else raw
            except ValueError:
                return raw
    except ValueError:
        raise UserError(f"option {key}={raw!r}: expected {type(default).__name__}") from None
    return raw


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """Parse ``["a=1", "b=x"]`` into ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"option '{pair}' is not of the form key=value")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


class Registry(Generic[T]):
    """A named family of constructors (objectives, backbones, attacks)."""

    def __init__(self, kind: str, skip: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.skip = set(skip) | {"self"}
        self._items: dict[str, Callable[..., T]] = {}

    def add(self, name: str, factory: Callable[..., T]) -> None:
        self._items[name] = factory

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._items:
            raise unknown_choice(self.kind, name, self._items)
        return self._items[name]

    def defaults(self, name: str) -> dict[str, Any]:
        """The tunable options of ``name`` with their defaults."""
        sig = inspect.signature(self.get(name))
        return {p.name: p.default for p in sig.parameters.values()
                if p.name not in self.skip and p.default is not inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def options(self, name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate and type ``given`` options against ``name``'s constructor."""
        valid = self.defaults(name)
        out: dict[str, Any] = {}
        for key, raw in (given or {}).items():
            if key not in valid:
                choices = ", ".join(sorted(valid)) or "(none)"
                raise UserError(f"{self.kind} '{name}' has no option '{key}'; valid options: {choices}")
            out[key] = coerce(key, raw, valid[key])
        return out

    def build(self, name: str, given: Mapping[str, Any] | None = None, /, **fixed: Any) -> T:
        return self.get(name)(**fixed, **self.options(name, given))
