"""What every filter kind shares: the phases, the verdict, option parsing and range checks.

Kept apart from the kinds so each kind's module imports only this, and adding a kind touches
only its own module and the registry in `openuni_builder.filters`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from openuni_builder.clip import Clip
from openuni_builder.modalities import modalities

PHASES = ("listing", "probe", "content", "annotated")
# Modalities made only where people are: the `person` filter's evidence (their records say so).
HUMAN_MODALITIES = tuple(m.name for m in modalities().values() if m.human)


class FilterConfigError(ValueError):
    """A `filters:` block that cannot be used; the message names the filter and key."""


class Verdict(NamedTuple):
    keep: bool
    reason: str | None
    values: dict[str, Any]


@dataclass(frozen=True)
class Bounds:
    """An inclusive [min, max] range; either side may be open."""

    min: float | None = None
    max: float | None = None

    @classmethod
    def parse(cls, where: str, block: Any) -> "Bounds":
        if block is None:
            return cls()
        if not isinstance(block, dict) or set(block) - {"min", "max"}:
            raise FilterConfigError(f"{where}: expected {{min: X, max: Y}} (either optional), got {block!r}")
        try:
            low, high = (None if block.get(k) is None else float(block[k]) for k in ("min", "max"))
        except (TypeError, ValueError) as exc:
            raise FilterConfigError(f"{where}: min/max must be numbers, got {block!r}") from exc
        if low is not None and high is not None and low > high:
            raise FilterConfigError(f"{where}: min {low:g} > max {high:g}")
        return cls(low, high)

    def violation(self, name: str, value: float) -> str | None:
        """Why `value` is out of range, or None when it is inside."""
        if self.min is not None and value < self.min:
            return f"{name} {value:.4g} < min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{name} {value:.4g} > max {self.max:g}"
        return None


class Filter:
    """Base class: parses its options (unknown keys are errors) and applies its verdict."""

    name: ClassVar[str]
    phase: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()  # annotators whose outputs it reads (any one is enough)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            raise FilterConfigError(f"filters.{self.name}: unknown keys {sorted(unknown)}; "
                                    f"allowed: {sorted(self.defaults)}")
        self.options = {**self.defaults, **options}

    @property
    def fingerprint(self) -> str:
        """Identifies the filter's settings, so a rerun knows whether an old drop still holds."""
        text = json.dumps({"name": self.name, "options": self.options}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def check(self, clip: Clip) -> Verdict:
        raise NotImplementedError

    def apply(self, clip: Clip) -> None:
        """Run the check; record the values; drop the clip when it fails."""
        verdict = self.check(clip)
        clip.filters[self.name] = verdict.values
        if not verdict.keep:
            clip.drop(self.name, verdict.reason or self.name, verdict.values)

    def _bounds(self, *names: str) -> dict[str, Bounds]:
        return {n: Bounds.parse(f"filters.{self.name}.{n}", self.options[n]) for n in names}


def _first_violation(bounds: dict[str, Bounds], values: dict[str, Any]) -> str | None:
    for name, bound in bounds.items():
        if values.get(name) is not None and (why := bound.violation(name, values[name])):
            return why
    return None
