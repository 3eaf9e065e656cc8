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
#: marks an option without a default (a required constructor argument)
REQUIRED: Any = inspect.Parameter.empty

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(key: str, raw: Any, default: Any, annotation: str = "") -> Any:
    """Convert a string option to the type of its default, or of its annotation when it has none."""
    if not isinstance(raw, str):
        return raw
    kind = type(default).__name__ if default is not None and default is not REQUIRED else ""
    if not kind:
        words = annotation.replace("|", " ").replace(",", " ").split()
        kind = next((w for w in ("bool", "int", "float") if w in words), "str")
        if kind == "int" and "float" in words:
            kind = "float"
    try:
        if kind == "bool":
            low = raw.lower()
            if low not in _TRUE | _FALSE:
                raise ValueError(raw)
            return low in _TRUE
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise UserError(f"option {key}={raw!r}: expected {kind}") from None
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

    def _parameters(self, name: str) -> list[inspect.Parameter]:
        sig = inspect.signature(self.get(name))
        return [p for p in sig.parameters.values()
                if p.name not in self.skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def defaults(self, name: str) -> dict[str, Any]:
        """The options of ``name`` with their defaults (:data:`REQUIRED` for required ones)."""
        return {p.name: p.default for p in self._parameters(name)}

    def options(self, name: str, given: Mapping[str, Any] | None, *, complete: bool = False) -> dict[str, Any]:
        """Validate and type ``given`` options against ``name``'s constructor.

        With ``complete=True`` the result also holds every other option that has a
        JSON-representable default (so equal settings compare equal however given).
        """
        params = {p.name: p for p in self._parameters(name)}
        # a constructor with **kwargs (e.g. transfer) forwards unknown options as given,
        # to a constructor that validates and types them itself
        forwards = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.get(name)).parameters.values())
        out: dict[str, Any] = {}
        for key, raw in (given or {}).items():
            if key not in params and forwards:
                out[key] = raw
                continue
            if key not in params:
                choices = ", ".join(sorted(params)) or "(none)"
                raise UserError(f"{self.kind} '{name}' has no option '{key}'; valid options: {choices}")
            p = params[key]
            out[key] = coerce(key, raw, p.default, str(p.annotation))
        if complete:
            for key, p in params.items():
                if key not in out and isinstance(p.default, (bool, int, float, str)):
                    out[key] = p.default
        return out

    def build(self, name: str, given: Mapping[str, Any] | None = None, /, **fixed: Any) -> T:
        """Construct ``name`` with ``fixed`` arguments and validated ``given`` options."""
        options = self.options(name, given)
        missing = [k for k, v in self.defaults(name).items() if v is REQUIRED and k not in options]
        if missing:
            raise UserError(f"{self.kind} '{name}' needs option(s): {', '.join(missing)}")
        return self.get(name)(**fixed, **options)

    def describe(self, name: str) -> str:
        """``name: key=default, ...`` for listings (``<required>`` for required options)."""
        opts = ", ".join(f"{k}=<required>" if v is REQUIRED else f"{k}={v}" for k, v in self.defaults(name).items())
        return f"{name}: {opts}"
