"""A modality added the way docs/ARCHITECTURE.md says ("Add a modality"): one annotator, one codec
and one `register(...)` call, nothing else in the tree. `luma` is each frame's brightness, stored
as a grey Pixelplanes video and a uint8 sidecar. Loaded through OPENUNI_PLUGINS (tests/conftest.py),
so the Ray workers of a build know it too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from annotators.base import Annotator, Resources, clip_frames
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.modalities import Modality, register
from openuni_builder.pixelplanes.base import Codec, check_frames, require


@dataclass(frozen=True)
class LumaOptions:
    gain: float = 1.0  # brightness multiplier, clipped to 255


class LumaAnnotator(Annotator):
    name = "luma"
    Options = LumaOptions
    default_resources = Resources(num_cpus=0.5)

    def load(self) -> None:
        pass

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        out = []
        for clip in clips:
            grey = clip_frames(clip).mean(axis=-1) * self.options.gain
            out.append(ModalityOutput(raw={"luma": np.clip(np.round(grey), 0, 255).astype(np.uint8)}))
        return out

    def provenance(self) -> dict[str, Any]:
        return {"gain": self.options.gain}


class LumaCodec(Codec):
    name = "luma"

    def encode(self, raw: dict[str, np.ndarray], num_frames: int, **options: Any) -> tuple[np.ndarray, dict]:
        luma = require(raw, "luma", self.name, 3)
        return np.repeat(luma[..., None], 3, axis=-1).astype(np.uint8), {}

    def decode(self, frames: np.ndarray, params: dict) -> dict[str, np.ndarray]:
        return {"luma": check_frames(frames, self.name)[..., 1]}


LUMA = register(Modality(
    "luma", f"{__name__}:LumaAnnotator", "per-pixel brightness (0..255)", codec=f"{__name__}:LumaCodec",
    storage="x264rgb_lossless", raw={"luma": "uint8"}))
