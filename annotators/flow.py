"""Forward optical flow t -> t+1 for every clip.

Output `raw["flow"]` is float32 (T-1, H, W, 2) in pixels of the clip's frame size, (u, v) = (x, y)
displacement of each pixel of frame t. Backends:
- "raft": torchvision's RAFT (small or large) from a state-dict file in the local model cache.
- "dis": OpenCV's DIS optical flow: real, offline, CPU-only, needs no model.
- "auto" (default): RAFT when its model is cached, else DIS; `provenance()` says which ran.
With `max_side`, frames are shrunk so their longer side is at most that before the backend runs,
and the flow is resized back with its vectors scaled by the same factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from annotators.base import Annotator, Resources, clip_frames
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, missing

DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}
BACKENDS = ("auto", "raft", "dis")


class DisFlow:
    """OpenCV DIS on grey frames."""

    def __init__(self, preset: str) -> None:
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        flows = [self.dis.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:])]
        return np.stack(flows).astype(np.float32)


@dataclass(frozen=True)
class FlowOptions:
    """`backend`: auto | raft | dis (module docstring); `model`: a registered torchvision RAFT;
    `max_side`: shrink frames to this longer side before the backend runs (None: full size)."""

    backend: str = "auto"
    model: str = "raft-small"
    num_flow_updates: int = 12
    frame_batch: int = 8
    max_side: int | None = None
    dis_preset: str = "medium"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown flow backend {self.backend!r}; known: {', '.join(BACKENDS)}")
        if self.dis_preset not in DIS_PRESETS:
            raise ValueError(f"dis_preset must be one of {', '.join(DIS_PRESETS)}, got {self.dis_preset!r}")
        if self.num_flow_updates < 1 or self.frame_batch < 1:
            raise ValueError(f"num_flow_updates and frame_batch must be >= 1, got {self.num_flow_updates}, "
                             f"{self.frame_batch}")
        if self.max_side is not None and self.max_side < 16:
            raise ValueError(f"max_side must be None or >= 16, got {self.max_side}")
        rafts = [e.name for e in load_registry().values() if e.kind == "torchvision" and "raft" in e.hub_id]
        if self.model not in rafts:
            raise ValueError(f"flow model must be a registered torchvision RAFT ({', '.join(rafts)}), "
                             f"got {self.model!r}")


class FlowAnnotator(Annotator):
    """Optical flow between consecutive clip frames."""

    name: ClassVar[str] = "flow"
    Options: ClassVar[type] = FlowOptions
    # RAFT: a GPU share (without one, Ray hides the GPUs from the actor and RAFT runs on CPU);
    # dropped by the runtime where no GPU is visible. The pipelines' shares add up to one GPU.
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.1, batch_size=4, concurrency=1)
    # DIS holds no model and needs no GPU: it runs in the CPU task chain (decode -> flow -> encode
    # fused into one Ray task, with decode's CPU ask and concurrency), so a clip's frames and its
    # float32 flow (35 MB for 49x256²) are never pickled across processes. One clip per call:
    # batching gains DIS nothing.
    dis_resources: ClassVar[Resources] = Resources(num_cpus=1, batch_size=1, pool="tasks")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        if o.backend == "auto":  # decided once, here, so provenance and load agree
            self.backend = "dis" if missing(o.model) else "raft"
        else:
            self.backend = o.backend
        self._flow = None  # DisFlow or annotators.raft.RaftFlow, made by load()

    def resources(self) -> Resources:
        return self.dis_resources if self.backend == "dis" else self.default_resources

    def models(self) -> tuple[str, ...]:
        """RAFT's model unless the backend is DIS; with `auto`, the one it runs when it is cached."""
        return () if self.options.backend == "dis" else (self.options.model,)

    def unavailable(self) -> str | None:
        return super().unavailable() if self.backend == "raft" else None  # `auto` falls back to DIS

    def load(self) -> None:
        if self.backend == "raft":  # torch is imported only here: DIS actors start without it
            from annotators.raft import RaftFlow
            from annotators.torch_device import pick_device

            o = self.options
            self._flow = RaftFlow(o.model, pick_device(o.device), o.num_flow_updates, o.frame_batch)
        else:
            self._flow = DisFlow(self.options.dis_preset)

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        if self._flow is None:
            raise RuntimeError("FlowAnnotator.annotate called before load()")
        return [ModalityOutput(raw={"flow": self._clip_flow(clip_frames(c), c.key)}) for c in clips]

    def _clip_flow(self, frames: np.ndarray, key: str) -> np.ndarray:
        if len(frames) < 2:
            raise ValueError(f"clip {key}: flow needs at least 2 frames, got {len(frames)}")
        height, width = frames.shape[1:3]
        max_side = self.options.max_side
        scale = 1.0 if max_side is None else min(1.0, max_side / max(height, width))
        if scale == 1.0:
            return self._flow(frames)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        return resize_flow(self._flow(small), height, width)

    def provenance(self) -> dict[str, Any]:
        o = self.options
        info: dict[str, Any] = {"requested_backend": o.backend, "max_side": o.max_side}
        if self.backend == "dis":
            return {**info, "backend": "opencv-dis", "preset": o.dis_preset, "opencv": cv2.__version__}
        import torchvision

        entry = load_registry()[o.model]
        device = self._flow.device.type if self._flow is not None else o.device
        return {**info, "backend": "raft", "model": entry.name, "hub_id": entry.hub_id,
                "revision": entry.revision, "license": entry.license,
                "num_flow_updates": o.num_flow_updates, "torchvision": torchvision.__version__,
                "device": device}


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flow fields (N, h, w, 2) resized to (N, height, width, 2), vectors scaled with the resize."""
    small_h, small_w = flow.shape[1:3]
    gain = np.array([width / small_w, height / small_h], dtype=np.float32)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) * gain for f in flow])
