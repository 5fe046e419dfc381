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
from openuni_builder.models import ModelUnavailable  # noqa: F401  (re-exported for annotators)


@dataclass(frozen=True)
class Resources:
    """What one actor of this annotator asks Ray for, and how many clips it takes per call.

    `num_gpus` may be fractional (0.25 packs four actors on one GPU). The pool starts with
    `concurrency` actors and Ray Data autoscales it up to `max_concurrency` while work waits;
    left unset, a GPU annotator may grow by as many copies of the pipeline's GPU set as the
    cluster holds (a set that fits one GPU runs 64 times on 64 GPUs, not once) and a CPU one
    stays at `concurrency`. The pipeline
    config can override any field per annotator.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 1
    concurrency: int = 1
    max_concurrency: int | None = None
    timeout_s: float | None = None  # per clip; None: openuni_builder.crashes.DEFAULT_TIMEOUT_S

    def merged(self, overrides: dict[str, Any] | None) -> "Resources":
        return replace(self, **(overrides or {}))


class Annotator(ABC):
    """Base class of every annotator.

    Subclasses set `name` (the modality: it names the shard members `KEY.<name>.mp4/.npz` and the
    Pixelplanes codec used) and `video` (False for annotators that only add JSON, like captions).
    `options` come from the pipeline config's `annotators.<name>` block.
    """

    name: ClassVar[str]
    video: ClassVar[bool] = True
    default_resources: ClassVar[Resources] = Resources()

    def __init__(self, **options: Any) -> None:
        self.options = options

    def resources(self) -> Resources:
        """What this annotator asks Ray for with its options (default: `default_resources`);
        the pipeline config's `resources` block overrides it field by field."""
        return self.default_resources

    def unavailable(self) -> str | None:
        """Why this annotator cannot run here (a model missing from the cache), or None.

        Called on the driver before the pipeline starts, so it must be cheap: check files, do not
        load weights. The build then skips the modality (or stops with `--require-all`).
        """
        return None

    @abstractmethod
    def load(self) -> None:
        """Load models once per actor process (from the local cache only)."""

    @abstractmethod
    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        """Annotate a batch of decoded clips; one output per clip, in order.

        Raise on failure: the runtime retries the batch clip by clip and records the clip that
        still fails in the ledger, so one bad clip never takes a stage down.
        """

    def provenance(self) -> dict[str, Any]:
        """Model ids, revisions and settings used, recorded in every sample's JSON and the card."""
        return {}


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
