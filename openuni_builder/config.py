"""Pipeline configuration: one YAML file says the clip spec, which annotators run (in order) with
what options and resources, how captions are chosen, and how shards are bounded.

Unknown keys are errors, so a typo in a config never silently changes a build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from annotators.base import Resources
from openuni_builder.balance import BalanceConfig
from openuni_builder.clip import ClipSpec
from openuni_builder.filters import parse_filters

TOP_KEYS = {"name", "description", "clip", "caption", "annotators", "stages", "shards", "filters", "balance",
            "previews"}
PREVIEW_KEYS = {"samples": 4, "animated": False, "frames": 6}
CAPTION_CHOICES = ("source", "generated")


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and why."""


@dataclass(frozen=True)
class AnnotatorConfig:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildConfig:
    name: str
    spec: ClipSpec
    annotators: tuple[AnnotatorConfig, ...]
    caption_use: str = "source"
    decode: Resources = Resources(num_cpus=1, concurrency=2)
    encode: Resources = Resources(num_cpus=1, concurrency=2)
    shard_max_samples: int = 256
    shard_max_bytes: int = 1_000_000_000
    filters: dict[str, Any] = field(default_factory=dict)
    balance: dict[str, Any] = field(default_factory=dict)
    previews: dict[str, Any] = field(default_factory=lambda: dict(PREVIEW_KEYS))
    path: str | None = None

    def without(self, skipped: set[str]) -> "BuildConfig":
        """The same config minus the annotators in `skipped` (models missing)."""
        kept = tuple(a for a in self.annotators if a.name not in skipped)
        return BuildConfig(**{**self.__dict__, "annotators": kept})


def load_config(path: str | Path) -> BuildConfig:
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    try:
        spec = ClipSpec(**raw.get("clip", {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: clip: {exc}") from exc
    caption_use = (raw.get("caption") or {}).get("use", "source")
    if caption_use not in CAPTION_CHOICES:
        raise ConfigError(f"{path}: caption.use must be one of {CAPTION_CHOICES}, got {caption_use!r}")
    annotators = []
    for name, block in (raw.get("annotators") or {}).items():
        block = dict(block or {})
        annotators.append(AnnotatorConfig(name=name, resources=block.pop("resources", {}) or {}, options=block))
    try:  # filters and balance are parsed again where they run; here only to fail early
        parse_filters(raw.get("filters"))
        if raw.get("balance"):
            BalanceConfig.from_dict(raw["balance"])
    except (ValueError, TypeError) as exc:  # FilterConfigError, BalanceError, or a bad number
        raise ConfigError(f"{path}: {exc}") from exc
    previews = raw.get("previews") or {}
    if not isinstance(previews, dict) or set(previews) - set(PREVIEW_KEYS):
        raise ConfigError(f"{path}: previews must be a mapping with keys {sorted(PREVIEW_KEYS)}, got {previews!r}")
    stages = raw.get("stages") or {}
    shards = raw.get("shards") or {}
    try:
        return BuildConfig(
            name=str(raw.get("name", path.stem)), spec=spec, annotators=tuple(annotators),
            caption_use=caption_use,
            decode=Resources(num_cpus=1, concurrency=2).merged(stages.get("decode")),
            encode=Resources(num_cpus=1, concurrency=2).merged(stages.get("encode")),
            shard_max_samples=int(shards.get("max_samples", 256)),
            shard_max_bytes=int(float(shards.get("max_bytes", 1e9))),
            filters=dict(raw.get("filters") or {}), balance=dict(raw.get("balance") or {}),
            previews={**PREVIEW_KEYS, **previews}, path=str(path))
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
