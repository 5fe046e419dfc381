"""Relative depth for every clip frame: `raw["disparity"]` float32 (T, H, W), larger = nearer.

The annotator (options, model registry, provenance) is split from the backend that turns frames
into disparity, so a video-consistent depth model that takes the whole clip at once can be added as
another backend behind the same interface. Today's backend is Depth Anything V2 through
transformers (`annotators.depth_anything`), run frame by frame in batches; its output is exactly
what the model's image processor (`post_process_depth_estimation` at the clip's frame size) gives.
Backends live in their own modules, imported by `load()`, and `device`/`dtype` stay option
strings until then: the driver builds this annotator only to check its model and resources, and
doing that must not import torch and transformers (seconds and hundreds of MB on every build).
"""

from __future__ import annotations

import pkgutil
from typing import TYPE_CHECKING, Any, ClassVar

from annotators.base import Annotator, Resources, clip_frames
from annotators.torch_device import check_dtype, pick_device, pick_dtype
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, model_dir, missing

if TYPE_CHECKING:
    from annotators.depth_anything import DepthAnythingV2

# Registered model name -> "module:class" of the backend that runs it, resolved by `load()`
# (a video depth model adds its own entries here).
BACKENDS: dict[str, str] = {
    "depth-anything-v2-small": "annotators.depth_anything:DepthAnythingV2",
    "depth-anything-v2-large": "annotators.depth_anything:DepthAnythingV2",
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
        self.device_option, self.dtype_option = device, check_dtype(dtype)
        self._backend: DepthAnythingV2 | None = None

    def unavailable(self) -> str | None:
        return missing(self.model)

    def load(self) -> None:
        folder = model_dir(self.model)  # a missing model fails here, before torch is imported
        backend = pkgutil.resolve_name(BACKENDS[self.model])
        device = pick_device(self.device_option)
        self._backend = backend(folder, device, pick_dtype(self.dtype_option, device), self.frame_batch)

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        if self._backend is None:
            raise RuntimeError("DepthAnnotator.annotate called before load()")
        return [ModalityOutput(raw={"disparity": self._backend(clip_frames(c))}) for c in clips]

    def provenance(self) -> dict[str, Any]:
        """What ran; before `load()`, the device and dtype options as given (`auto` unresolved)."""
        entry = load_registry()[self.model]
        if self._backend is None:
            device, dtype = self.device_option, self.dtype_option
        else:
            device, dtype = self._backend.device.type, str(self._backend.dtype).removeprefix("torch.")
        return {"model": entry.name, "hub_id": entry.hub_id, "revision": entry.revision,
                "license": entry.license, "output": "relative disparity (larger = nearer)",
                "device": device, "dtype": dtype, "frame_batch": self.frame_batch}
