"""The Depth Anything V2 backend of the depth annotator (transformers), in its own module so
the driver, which builds the annotator only to check its model, never imports torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation
from transformers.modeling_outputs import DepthEstimatorOutput


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
