"""Forward optical flow t -> t+1 for every clip.

Backend "dis" is OpenCV's DIS optical flow: real, offline, CPU-only, and the default when no flow
model is cached. Output `raw["flow"]` is float32 (T-1, H, W, 2) in pixels of the clip's frame
size, (u, v) = (x, y) displacement of each pixel of frame t.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from annotators.base import Annotator, Resources
from openuni_builder.clip import Clip, ModalityOutput

DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


class FlowAnnotator(Annotator):
    """Optical flow between consecutive clip frames."""

    name: ClassVar[str] = "flow"
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, batch_size=4, concurrency=1)

    def __init__(self, backend: str = "dis", dis_preset: str = "medium", **options: Any) -> None:
        super().__init__(backend=backend, dis_preset=dis_preset, **options)
        if backend != "dis":
            raise ValueError(f"unknown flow backend {backend!r}; known: dis")
        if dis_preset not in DIS_PRESETS:
            raise ValueError(f"dis_preset must be one of {', '.join(DIS_PRESETS)}, got {dis_preset!r}")
        self.backend, self.dis_preset = backend, dis_preset
        self._dis = None

    def load(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.dis_preset])

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        return [ModalityOutput(raw={"flow": self._dis_flow(c.frames)}) for c in clips]

    def _dis_flow(self, frames: np.ndarray) -> np.ndarray:
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        flows = [self._dis.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:])]
        return np.stack(flows).astype(np.float32)

    def provenance(self) -> dict[str, Any]:
        return {"backend": "opencv-dis", "preset": self.dis_preset, "opencv": cv2.__version__}
