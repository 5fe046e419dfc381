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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from annotators.base import Annotator, Resources, clip_frames
from annotators.torch_device import check_dtype, pick_device, pick_dtype
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, model_dir

if TYPE_CHECKING:
    from annotators.depth_anything import DepthAnythingV2

# Registered model name -> "module:class" of the backend that runs it, resolved by `load()`
# (a video depth model adds its own entries here).
BACKENDS: dict[str, str] = {
    "depth-anything-v2-small": "annotators.depth_anything:DepthAnythingV2",
    "depth-anything-v2-large": "annotators.depth_anything:DepthAnythingV2",
}


@dataclass(frozen=True)
class DepthOptions:
    """`model`: a registered depth model with a backend in BACKENDS; `frame_batch`: frames per
    forward pass; `device`/`dtype`: strings until `load()` (auto = CUDA and bfloat16 where there)."""

    model: str = "depth-anything-v2-small"
    frame_batch: int = 16
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.model not in BACKENDS:
            raise ValueError(f"unknown depth model {self.model!r}; known: {', '.join(BACKENDS)}")
        if self.frame_batch < 1:
            raise ValueError(f"frame_batch must be >= 1, got {self.frame_batch}")
        check_dtype(self.dtype)


class DepthAnnotator(Annotator):
    """Monocular relative disparity (affine-invariant inverse depth) for every frame."""

    name: ClassVar[str] = "depth"
    Options: ClassVar[type] = DepthOptions
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.25, batch_size=2)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._backend: DepthAnythingV2 | None = None

    def models(self) -> tuple[str, ...]:
        return (self.options.model,)

    def load(self) -> None:
        o = self.options
        folder = model_dir(o.model)  # a missing model fails here, before torch is imported
        backend = pkgutil.resolve_name(BACKENDS[o.model])
        device = pick_device(o.device)
        self._backend = backend(folder, device, pick_dtype(o.dtype, device), o.frame_batch)

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        if self._backend is None:
            raise RuntimeError("DepthAnnotator.annotate called before load()")
        return [ModalityOutput(raw={"disparity": self._backend(clip_frames(c))}) for c in clips]

    def provenance(self) -> dict[str, Any]:
        """What ran; before `load()`, the device and dtype options as given (`auto` unresolved)."""
        entry = load_registry()[self.options.model]
        if self._backend is None:
            device, dtype = self.options.device, self.options.dtype
        else:
            device, dtype = self._backend.device.type, str(self._backend.dtype).removeprefix("torch.")
        return {"model": entry.name, "hub_id": entry.hub_id, "revision": entry.revision,
                "license": entry.license, "output": "relative disparity (larger = nearer)",
                "device": device, "dtype": dtype, "frame_batch": self.options.frame_batch}
