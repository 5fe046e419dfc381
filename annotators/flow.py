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


class FlowAnnotator(Annotator):
    """Optical flow between consecutive clip frames."""

    name: ClassVar[str] = "flow"
    # RAFT: a GPU share (without one, Ray hides the GPUs from the actor and RAFT runs on CPU);
    # dropped by the runtime where no GPU is visible. The pipelines' shares add up to one GPU.
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.1, batch_size=4, concurrency=1)
    # DIS is CPU-only and gains nothing from batching: one clip per call, so each clip goes on to
    # encoding as soon as its flow is done instead of waiting for three more (28 sample clips on
    # 2 CPUs: the build 35.2 s -> 34.4 s). On a many-core CPU node raise `resources: {concurrency: N}`.
    dis_resources: ClassVar[Resources] = Resources(num_cpus=1, batch_size=1, concurrency=1)

    def __init__(self, backend: str = "auto", model: str = "raft-small", num_flow_updates: int = 12,
                 frame_batch: int = 8, max_side: int | None = None, dis_preset: str = "medium",
                 device: str = "auto", **options: Any) -> None:
        super().__init__(backend=backend, model=model, num_flow_updates=num_flow_updates,
                         frame_batch=frame_batch, max_side=max_side, dis_preset=dis_preset,
                         device=device, **options)
        if backend not in BACKENDS:
            raise ValueError(f"unknown flow backend {backend!r}; known: {', '.join(BACKENDS)}")
        if dis_preset not in DIS_PRESETS:
            raise ValueError(f"dis_preset must be one of {', '.join(DIS_PRESETS)}, got {dis_preset!r}")
        if num_flow_updates < 1 or frame_batch < 1:
            raise ValueError(f"num_flow_updates and frame_batch must be >= 1, got {num_flow_updates}, {frame_batch}")
        if max_side is not None and max_side < 16:
            raise ValueError(f"max_side must be None or >= 16, got {max_side}")
        rafts = [e.name for e in load_registry().values() if e.kind == "torchvision" and "raft" in e.hub_id]
        if model not in rafts:
            raise ValueError(f"flow model must be a registered torchvision RAFT ({', '.join(rafts)}), got {model!r}")
        self.model, self.num_flow_updates, self.frame_batch = model, num_flow_updates, frame_batch
        self.max_side, self.dis_preset, self.device_option = max_side, dis_preset, device
        self.requested = backend
        if backend == "auto":  # decided once, here, so provenance and load agree
            backend = "dis" if missing(self.model) else "raft"
        self.backend = backend
        self._flow = None  # DisFlow or annotators.raft.RaftFlow, made by load()

    def resources(self) -> Resources:
        return self.dis_resources if self.backend == "dis" else self.default_resources

    def unavailable(self) -> str | None:
        return missing(self.model) if self.backend == "raft" else None

    def load(self) -> None:
        if self.backend == "raft":  # torch is imported only here: DIS actors start without it
            from annotators.raft import RaftFlow
            from annotators.torch_device import pick_device

            self._flow = RaftFlow(self.model, pick_device(self.device_option), self.num_flow_updates,
                                  self.frame_batch)
        else:
            self._flow = DisFlow(self.dis_preset)

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        if self._flow is None:
            raise RuntimeError("FlowAnnotator.annotate called before load()")
        return [ModalityOutput(raw={"flow": self._clip_flow(clip_frames(c), c.key)}) for c in clips]

    def _clip_flow(self, frames: np.ndarray, key: str) -> np.ndarray:
        if len(frames) < 2:
            raise ValueError(f"clip {key}: flow needs at least 2 frames, got {len(frames)}")
        height, width = frames.shape[1:3]
        scale = 1.0 if self.max_side is None else min(1.0, self.max_side / max(height, width))
        if scale == 1.0:
            return self._flow(frames)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        return resize_flow(self._flow(small), height, width)

    def provenance(self) -> dict[str, Any]:
        info: dict[str, Any] = {"requested_backend": self.requested, "max_side": self.max_side}
        if self.backend == "dis":
            return {**info, "backend": "opencv-dis", "preset": self.dis_preset, "opencv": cv2.__version__}
        import torchvision

        entry = load_registry()[self.model]
        device = self._flow.device.type if self._flow is not None else self.device_option
        return {**info, "backend": "raft", "model": entry.name, "hub_id": entry.hub_id,
                "revision": entry.revision, "license": entry.license,
                "num_flow_updates": self.num_flow_updates, "torchvision": torchvision.__version__,
                "device": device}


def resize_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flow fields (N, h, w, 2) resized to (N, height, width, 2), vectors scaled with the resize."""
    small_h, small_w = flow.shape[1:3]
    gain = np.array([width / small_w, height / small_h], dtype=np.float32)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) * gain for f in flow])
