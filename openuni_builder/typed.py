"""Plain dicts (a YAML block) checked into frozen dataclasses: the one parser behind the pipeline
config and every annotator's options, so an unknown key or a value of the wrong type is an error
that names it and lists what is allowed, never a setting silently ignored."""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any, TypeVar

T = TypeVar("T")


class OptionError(ValueError):
    """A key that is unknown or has the wrong type; the message names it and what is allowed."""


def parse_fields(cls: type[T], given: dict[str, Any] | None, where: str) -> T:
    """`cls(**given)` after checking every key against `cls`'s fields and their annotations
    (plain types, `X | None`, `tuple[X, ...]`; YAML lists become tuples, ints pass as floats).
    `where` names the block in messages ("flow", "shards"). Errors of `cls.__post_init__` come
    back as OptionError with `where` in front."""
    if given is not None and not isinstance(given, dict):
        raise OptionError(f"{where}: must be a mapping of options, got {given!r}")
    given = given or {}
    declared = {f.name: f for f in fields(cls)}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(f"{n} (default {_default(f)!r})" for n, f in declared.items()) or "none"
        raise OptionError(f"{where}: unknown option{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                          f"allowed: {allowed}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in given.items():
        value = tuple(value) if isinstance(value, list) else value
        if not fits(value, hints[name]):
            raise OptionError(f"{where}: option {name} must be {_show(hints[name])}, got {value!r}")
        values[name] = float(value) if hints[name] is float else value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{where}: {exc}") from exc


def fits(value: Any, hint: Any) -> bool:
    """Whether `value` fits the annotation `hint` (plain types, `X | None`, tuple[X, ...], Any)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(fits(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _default(f: Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
