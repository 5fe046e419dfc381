"""Relative depth for every clip frame: `raw["disparity"]` float32 (T, H, W), larger = nearer.

The annotator (options, model registry, provenance) is split from the backend that turns frames
into disparity, so a video-consistent depth model that takes the whole clip at once can be added as
another backend behind the same interface. Today's backend is Depth Anything V2 through
transformers, run frame by frame in batches; its output is exactly what the model's image
processor (`post_process_depth_estimation` at the clip's frame size) gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation
from transformers.modeling_outputs import DepthEstimatorOutput

from annotators.base import Annotator, Resources, clip_frames
from annotators.torch_device import pick_device, pick_dtype
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, model_dir, missing


class DepthAnythingV2:
    """Depth Anything V2 (DPT head on DINOv2) from a local transformers folder, per frame.

    Frames are preprocessed on the CPU by the model's own image processor (aspect-preserving
    resize to a multiple of the patch size, ImageNet normalisation), the network runs in
    `dtype` on `device`, and the predicted disparity is resized back (bicubic) in float32.
    """

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype, frame_batch: int) -> None:
        self.device, self.dtype, self.frame_batch = device, dtype, frame_batch
        self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        self.model = DepthAnythingForDepthEstimation.from_pretrained(
            folder, dtype=dtype, local_files_only=True).to(device).eval()

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        height, width = frames.shape[1:3]
        maps = []
        for start in range(0, len(frames), self.frame_batch):
            chunk = list(frames[start:start + self.frame_batch])
            pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            predicted = self.model(pixel_values=pixels.to(self.device, self.dtype)).predicted_depth
            resized = self.processor.post_process_depth_estimation(
                DepthEstimatorOutput(predicted_depth=predicted.float()),
                target_sizes=[(height, width)] * len(chunk))
            maps.extend(r["predicted_depth"] for r in resized)
        return torch.stack(maps).cpu().numpy().astype(np.float32, copy=False)


# Registered model name -> backend that runs it (a video depth model adds its own entries here).
BACKENDS: dict[str, type[DepthAnythingV2]] = {
    "depth-anything-v2-small": DepthAnythingV2,
    "depth-anything-v2-large": DepthAnythingV2,
}


class DepthAnnotator(Annotator):
    """Monocular relative disparity (affine-invariant inverse depth) for every frame."""

    name: ClassVar[str] = "depth"
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.25, batch_size=2)

    def __init__(self, model: str = "depth-anything-v2-small", frame_batch: int = 16,
                 device: str = "auto", dtype: str = "auto", **options: Any) -> None:
        super().__init__(model=model, frame_batch=frame_batch, device=device, dtype=dtype, **options)
        if model not in BACKENDS:
            raise ValueError(f"unknown depth model {model!r}; known: {', '.join(BACKENDS)}")
        if frame_batch < 1:
            raise ValueError(f"frame_batch must be >= 1, got {frame_batch}")
        self.model, self.frame_batch = model, frame_batch
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self._backend: DepthAnythingV2 | None = None

    def unavailable(self) -> str | None:
        return missing(self.model)

    def load(self) -> None:
        self._backend = BACKENDS[self.model](model_dir(self.model), self.device, self.dtype, self.frame_batch)

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        if self._backend is None:
            raise RuntimeError("DepthAnnotator.annotate called before load()")
        return [ModalityOutput(raw={"disparity": self._backend(clip_frames(c))}) for c in clips]

    def provenance(self) -> dict[str, Any]:
        entry = load_registry()[self.model]
        return {"model": entry.name, "hub_id": entry.hub_id, "revision": entry.revision,
                "license": entry.license, "output": "relative disparity (larger = nearer)",
                "device": self.device.type, "dtype": str(self.dtype).removeprefix("torch."),
                "frame_batch": self.frame_batch}
