"""Name -> constructor registries with typed ``key=value`` options.

Objectives, backbones and attacks are chosen by name on the command line and
in run configs; their hyperparameters travel as a ``{key: value}`` dict whose
types are taken from the constructor's defaults (or, without a default, from
its annotation).  Unknown names and options are
:class:`~robustloss.errors.UserError` s that list the valid choices.

How an option is given (:func:`coerce`), as a command-line string or as a JSON
value (suite files, run configs):

* ``int``: ``steps=10`` / ``10`` (a whole JSON number such as ``10.0`` too).
  Booleans (``true``, JSON ``true``) and fractions are refused.
* ``float``: ``eps=0.03`` / ``0.03``; ``inf`` and ``nan`` parse here and are
  judged by the constructor's range check.  Booleans are refused.
* ``bool``: ``1|true|yes|on`` / ``0|false|no|off`` (any case) / JSON ``true``,
  ``false``; numbers are refused.
* a tuple of numbers such as ``bounds: tuple[float, float]``: the values
  separated by colons, ``bounds=-1:1`` (commas separate options in an attack
  spec), or a JSON array ``[-1, 1]``; the count must match.
* ``str``: as given; a JSON non-string is refused.
* an option whose annotation allows ``None`` also takes ``none`` / JSON ``null``.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from robustloss.errors import UserError, unknown_choice

T = TypeVar("T")
#: marks an option without a default (a required constructor argument)
REQUIRED: Any = inspect.Parameter.empty

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def _kind(default: Any, annotation: str) -> tuple[str, int, bool]:
    """(kind, tuple length, accepts None) of an option from its default, else its annotation."""
    words = re.findall(r"[A-Za-z_][A-Za-z_0-9.]*", annotation)
    nullable = "None" in words or (default is None)
    if isinstance(default, tuple) and default and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in default):
        return "tuple", len(default), nullable
    if default is not None and default is not REQUIRED and not isinstance(default, tuple):
        known = isinstance(default, (bool, int, float, str))
        return (type(default).__name__ if known else "any"), 0, nullable
    if "tuple" in words:
        inside = annotation[annotation.index("[") + 1:annotation.rindex("]")] if "[" in annotation else ""
        return "tuple", len([w for w in inside.split(",") if w.strip()]), nullable
    simple = set(words) - {"None"}
    if not simple or simple - {"bool", "int", "float", "str"} or ("str" in simple and len(simple) > 1):
        # no annotation, or an object type (``nn.Module | str | None``, ``str | AttackLoss | None``):
        # passed on as given, for the constructor to check
        return "any", 0, nullable
    kind = next((w for w in ("bool", "float", "int") if w in simple), "str")
    return kind, 0, nullable


def _bad(key: str, raw: Any, kind: str, arity: int = 0) -> UserError:
    if kind == "tuple":
        expected = f"{arity} numbers separated by ':'" + (
            f" (e.g. {key}=-1:1, or a JSON array [-1, 1])" if arity == 2 else " (or a JSON array)")
    else:
        expected = _EXPECTED.get(kind, kind)
    return UserError(f"option {key}={raw!r}: expected {expected}")


def _number(key: str, raw: Any, kind: str) -> float | int:
    """A JSON/Python number for an ``int`` or ``float`` option (booleans refused)."""
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise _bad(key, raw, kind)
    if kind == "int" and isinstance(raw, numbers.Integral):
        return int(raw)
    try:
        value = float(raw)
    except OverflowError:
        raise UserError(f"option {key}={raw!r}: too large for a float") from None
    if kind == "int":
        if not (math.isfinite(value) and value == int(value)):
            raise _bad(key, raw, kind)
        return int(value)
    return value


def coerce(key: str, raw: Any, default: Any, annotation: str = "") -> Any:
    """Convert option ``key``'s value ``raw`` to the type of its default (or annotation).

    ``raw`` is a command-line string or a JSON/Python value; the accepted forms are
    listed in the module docstring.  A value of the wrong type is a :class:`UserError`
    naming the option and the expected form; ranges are checked by the constructor.
    """
    kind, arity, nullable = _kind(default, annotation)
    if kind == "any":
        return raw
    if raw is None:
        if nullable:
            return None
        raise _bad(key, raw, kind, arity)
    if isinstance(raw, str):
        text = raw.strip()
        if nullable and kind != "str" and text.lower() == "none":
            return None
        if kind == "str":
            return raw
        if kind == "bool":
            if text.lower() not in _TRUE | _FALSE:
                raise _bad(key, raw, kind)
            return text.lower() in _TRUE
        if kind == "tuple":
            parts = text.split(":")
            if len(parts) != arity:
                raise _bad(key, raw, kind, arity)
            try:
                return tuple(float(p) for p in parts)
            except ValueError:
                raise _bad(key, raw, kind, arity) from None
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise _bad(key, raw, kind) from None
    # a JSON or Python value
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _bad(key, raw, kind)
        return raw
    if kind in ("int", "float"):
        return _number(key, raw, kind)
    if kind == "tuple":
        if not isinstance(raw, (list, tuple)) or len(raw) != arity \
                or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in raw):
            raise _bad(key, raw, kind, arity)
        return tuple(float(v) for v in raw)
    raise _bad(key, raw, kind)


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
        if not isinstance(name, str) or name not in self._items:
            raise unknown_choice(self.kind, str(name), self._items)
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
        if given is not None and not isinstance(given, Mapping):
            raise UserError(f"the options of {self.kind} '{name}' must be a mapping of option names to values, "
                            f"got {type(given).__name__} {str(given)[:40]!r}")
        # a constructor with **kwargs (e.g. transfer) forwards unknown options as given,
        # to a constructor that validates and types them itself
        forwards = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(self.get(name)).parameters.values())
        out: dict[str, Any] = {}
        for key, raw in (given or {}).items():
            if not isinstance(key, str):
                raise UserError(f"{self.kind} '{name}': option names must be strings, got {key!r}")
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
