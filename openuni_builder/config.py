"""Pipeline configuration: one YAML file says the clip spec, which annotators run (in order) with
what options and resources, how captions are chosen, how shards are bounded, and the filters,
balancing and previews.

It is parsed once, here, into typed objects (`BuildConfig`); every other module reads those, never
the YAML. Unknown keys and annotator options are errors that name them and list the allowed ones
(`typed.parse_fields`), so a typo in a config never silently changes a build.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from annotators import get_annotator
from annotators.base import Annotator, Resources
from openuni_builder.clip import ClipSpec
from openuni_builder.filters import Filter, parse_filters
from openuni_builder.pixelplanes.storage import DEFAULT_PROFILE, PROFILES
from openuni_builder.typed import parse_fields

TOP_KEYS = {"name", "description", "clip", "caption", "annotators", "stages", "shards", "filters", "balance",
            "previews"}
CAPTION_CHOICES = ("source", "generated")


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and why."""


#: Balancing bucket keys (openuni_builder/publish/balance.py says what each means).
KEYS = ("source", "content", "motion")


class BalanceError(ValueError):
    """A balance config or build that cannot be balanced; the message says why."""


@dataclass(frozen=True)
class BalanceConfig:
    target: int | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    keys: tuple[str, ...] = KEYS
    motion_thresholds: tuple[float, ...] = (0.5, 2.0)
    motion_labels: tuple[str, ...] = ("static", "moderate", "dynamic")
    seed: int = 0

    @classmethod
    def from_dict(cls, block: dict[str, Any]) -> "BalanceConfig":
        """From the pipeline YAML's `balance:` block (target, quotas, keys, motion, seed)."""
        block = dict(block or {})
        unknown = set(block) - {"target", "quotas", "keys", "motion", "seed"}
        if unknown:
            raise BalanceError(f"balance: unknown keys {sorted(unknown)}; allowed: target, quotas, keys, motion, seed")
        motion = dict(block.get("motion") or {})
        if set(motion) - {"thresholds", "labels"}:
            raise BalanceError(f"balance.motion: allowed keys are thresholds, labels; got {sorted(motion)}")
        thresholds = tuple(float(t) for t in motion.get("thresholds", cls.motion_thresholds))
        labels = tuple(str(x) for x in motion.get(
            "labels", cls.motion_labels if "thresholds" not in motion else [f"motion{i}" for i in range(len(thresholds) + 1)]))
        cfg = cls(target=None if block.get("target") is None else int(block["target"]),
                  quotas={str(k): int(v) for k, v in (block.get("quotas") or {}).items()},
                  keys=tuple(block.get("keys", KEYS)), motion_thresholds=thresholds, motion_labels=labels,
                  seed=int(block.get("seed", 0)))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if set(self.keys) - set(KEYS) or not self.keys:
            raise BalanceError(f"balance.keys must be a non-empty subset of {KEYS}, got {list(self.keys)}")
        if (self.target is None) == (not self.quotas):
            raise BalanceError("balance needs exactly one of `target` (split evenly over buckets) or `quotas`")
        if self.target is not None and self.target < 0 or any(q < 0 for q in self.quotas.values()):
            raise BalanceError("balance target and quotas must be >= 0")
        if list(self.motion_thresholds) != sorted(self.motion_thresholds):
            raise BalanceError(f"balance.motion.thresholds must increase, got {list(self.motion_thresholds)}")
        if len(self.motion_labels) != len(self.motion_thresholds) + 1:
            raise BalanceError("balance.motion.labels needs one label more than thresholds")


@dataclass(frozen=True)
class AnnotatorConfig:
    """One `annotators.<name>` block: the annotator's typed `options` (its `Options` dataclass) and
    the `resources` fields it overrides."""

    name: str
    options: Any
    resources: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Annotator:
        """The annotator these options describe (cheap: models load in `load()`)."""
        return get_annotator(self.name)(**vars(self.options))

    def option_values(self) -> dict[str, Any]:
        return dict(vars(self.options))


@dataclass(frozen=True)
class CaptionConfig:
    use: str = "source"  # which caption becomes KEY.txt when both exist

    def __post_init__(self) -> None:
        if self.use not in CAPTION_CHOICES:
            raise ValueError(f"use must be one of {CAPTION_CHOICES}, got {self.use!r}")


@dataclass(frozen=True)
class ShardsConfig:
    """Shard bounds, and the storage profile of every sample's members (pixelplanes.storage.PROFILES:
    archive, standard, train, compact; docs/PIXELPLANES.md, "Storage profiles")."""

    max_samples: int = 256
    max_bytes: int = 1_000_000_000
    profile: str = DEFAULT_PROFILE

    def __post_init__(self) -> None:
        if self.max_samples < 1 or self.max_bytes < 1:
            raise ValueError(f"max_samples and max_bytes must be >= 1, got {self.max_samples}, {self.max_bytes}")
        if self.profile not in PROFILES:
            raise ValueError(f"unknown storage profile {self.profile!r}; known: {', '.join(PROFILES)}")


@dataclass(frozen=True)
class PreviewsConfig:
    samples: int = 4
    animated: bool = False
    frames: int = 6


@dataclass(frozen=True)
class StagesConfig:
    """Resources of the CPU task stages (field by field over `Resources(num_cpus=1, concurrency=2)`)."""

    decode: dict[str, Any] = field(default_factory=dict)
    encode: dict[str, Any] = field(default_factory=dict)


CPU_STAGE = Resources(num_cpus=1, concurrency=2)


@dataclass(frozen=True)
class BuildConfig:
    name: str
    spec: ClipSpec
    annotators: tuple[AnnotatorConfig, ...]
    caption: CaptionConfig = CaptionConfig()
    decode: Resources = CPU_STAGE
    encode: Resources = CPU_STAGE
    shards: ShardsConfig = ShardsConfig()
    filters: tuple[Filter, ...] = ()
    balance: BalanceConfig | None = None
    previews: PreviewsConfig = PreviewsConfig()
    path: str | None = None

    def without(self, skipped: set[str]) -> "BuildConfig":
        """The same config minus the annotators in `skipped` (models missing)."""
        return replace(self, annotators=tuple(a for a in self.annotators if a.name not in skipped))

    @property
    def modalities(self) -> list[str]:
        return [a.name for a in self.annotators]

    def models(self) -> list[str]:
        """The registered models the annotators declare with their options (`Annotator.models()`),
        each once, in config order: what a build loads, `openuni-models pull --pipeline` and the
        prefetch fetch."""
        return list(dict.fromkeys(m for a in self.annotators for m in a.build().models()))

    def filter_config(self) -> dict[str, Any]:
        """The active filters and their options, as stats.json and the card report them."""
        return {f.name: f.options for f in self.filters}


def load_config(path: str | Path) -> BuildConfig:
    """Read and validate a pipeline YAML file into a BuildConfig."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    try:
        stages = parse_fields(StagesConfig, raw.get("stages"), "stages")
        return BuildConfig(
            name=str(raw.get("name", path.stem)), spec=parse_fields(ClipSpec, raw.get("clip"), "clip"),
            annotators=tuple(_annotator(name, block) for name, block in (raw.get("annotators") or {}).items()),
            caption=parse_fields(CaptionConfig, raw.get("caption"), "caption"),
            decode=CPU_STAGE.merged(_resources(stages.decode, "stages.decode")),
            encode=CPU_STAGE.merged(_resources(stages.encode, "stages.encode")),
            shards=parse_fields(ShardsConfig, _numbers(raw.get("shards")), "shards"),
            filters=tuple(parse_filters(raw.get("filters"))),
            balance=BalanceConfig.from_dict(raw["balance"]) if raw.get("balance") else None,
            previews=parse_fields(PreviewsConfig, raw.get("previews"), "previews"), path=str(path))
    except (KeyError, TypeError, ValueError) as exc:  # OptionError, FilterConfigError, BalanceError, unknown annotator
        raise ConfigError(f"{path}: {exc.args[0] if isinstance(exc, KeyError) else exc}") from exc


def _annotator(name: str, block: dict[str, Any] | None) -> AnnotatorConfig:
    block = dict(block or {})
    resources = _resources(block.pop("resources", None), f"{name}.resources")
    cls = get_annotator(name)
    return AnnotatorConfig(name=name, options=parse_fields(cls.Options, block, f"annotators.{name}"),
                           resources=resources)


def _resources(block: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """The overridden Resources fields, checked (names and types) but kept as overrides: the
    annotator's own `resources()` depends on its options and is merged under them at plan time."""
    parse_fields(Resources, block, where)
    return dict(block or {})


def _numbers(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """YAML reads `1e9` as a string: byte sizes may be written that way."""
    if not isinstance(block, dict):
        return block
    return {k: int(float(v)) if k == "max_bytes" and isinstance(v, (str, float)) else v for k, v in block.items()}
