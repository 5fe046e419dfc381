"""The one interface every annotator implements: declare resources, load once, annotate a batch.

Runtime wraps each annotator in a Ray Data actor (`map_batches` with a callable class), so
`load()` runs once per actor process and `annotate()` once per batch of clips. Annotators never
touch shards, ledgers or Ray: they take decoded clips and return `ModalityOutput`s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import ModelUnavailable, missing  # noqa: F401  (re-exported for annotators)
from openuni_builder.typed import OptionError, parse_fields  # noqa: F401  (OptionError re-exported)


POOLS = ("actors", "tasks")


@dataclass(frozen=True)
class Resources:
    """What each actor (or task, with `pool="tasks"`) of this annotator asks Ray for, and how many
    clips it takes per call.

    `num_gpus` may be fractional (0.25 packs four actors on one GPU). The pool starts with
    `concurrency` actors and Ray Data autoscales it up to `max_concurrency` while work waits;
    left unset, a GPU annotator may grow by as many copies of the pipeline's GPU set as the
    cluster holds (a set that fits one GPU runs 64 times on 64 GPUs, not once) and a CPU one
    stays at `concurrency`. The pipeline
    config can override any field per annotator.

    `pool`: "actors" (default) holds the loaded models in long-lived actors; "tasks" is for an
    annotator with no model to hold and no GPU (DIS flow): it runs as Ray tasks with the decode
    stage's CPU ask and concurrency, so Ray Data fuses decode, it and encode into one task and
    a clip's frames and raw outputs never leave the process (runtime.resolve_stages).
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 1
    concurrency: int = 1
    max_concurrency: int | None = None
    timeout_s: float | None = None  # per clip; None: openuni_builder.crashes.DEFAULT_TIMEOUT_S
    pool: str = "actors"

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"resources.pool must be one of {', '.join(POOLS)}, got {self.pool!r}")

    def merged(self, overrides: dict[str, Any] | None) -> "Resources":
        return replace(self, **(overrides or {}))


@dataclass(frozen=True)
class NoOptions:
    """The options of an annotator that takes none."""


class Annotator(ABC):
    """Base class of every annotator.

    Subclasses set `name` (the modality: its record in `openuni_builder.modalities` names the shard
    members and the Pixelplanes codec) and `Options`, a frozen dataclass whose fields are the
    annotator's options with their types and defaults (the pipeline config's `annotators.<name>`
    block, checked against it by `parse_options`); validation of values goes in its
    `__post_init__`. The instance keeps them as `self.options`.
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    default_resources: ClassVar[Resources] = Resources()

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(type(self), options)

    def resources(self) -> Resources:
        """What this annotator asks Ray for with its options (default: `default_resources`);
        the pipeline config's `resources` block overrides it field by field."""
        return self.default_resources

    def unavailable(self) -> str | None:
        """Why this annotator cannot run here (a model missing from the cache), or None.

        Called on the driver before the pipeline starts, so it must be cheap: check files, do not
        load weights. The build then skips the modality (or stops with `--require-all`).
        Default: the first of `models()` missing from the local cache.
        """
        return missing(*self.models())

    @abstractmethod
    def load(self) -> None:
        """Load models once per actor process (from the local cache only)."""

    @abstractmethod
    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        """Annotate a batch of decoded clips; one output per clip, in order.

        Raise on failure: the runtime retries the batch clip by clip and records the clip that
        still fails in the ledger, so one bad clip never takes a stage down.
        """

    def models(self) -> tuple[str, ...]:
        """The registered models (manifests/models.toml) this annotator loads with its options.

        The one declaration `unavailable()`, the dry-run and test model writers, `openuni-models`
        and `--plan` all read; annotators that need no model (OpenCV flow) return ().
        """
        return ()

    def provenance(self) -> dict[str, Any]:
        """Model ids, revisions and settings used, recorded in every sample's JSON and the card."""
        return {}



def parse_options(cls: type["Annotator"], given: dict[str, Any]) -> Any:
    """`given` checked against `cls.Options` (`typed.parse_fields`): an unknown name or a value of the
    wrong type is an OptionError that names it and lists the allowed options."""
    return parse_fields(cls.Options, given, cls.name)


def check_frames(frames: Any, what: str = "frames") -> np.ndarray:
    """`frames` checked to be uint8 (T >= 1, H, W, 3) RGB: a clear error beats a shape error deep in a model."""
    if not (isinstance(frames, np.ndarray) and frames.ndim == 4 and frames.shape[-1] == 3
            and frames.dtype == np.uint8 and len(frames)):
        got = f"{getattr(frames, 'dtype', type(frames).__name__)} {getattr(frames, 'shape', '')}".strip()
        raise ValueError(f"{what} must be uint8 (T, H, W, 3) RGB with T >= 1, got {got}")
    return frames


def clip_frames(clip: Clip) -> np.ndarray:
    """The clip's frames, checked (see `check_frames`)."""
    return check_frames(clip.frames, f"clip {clip.key}: frames")
