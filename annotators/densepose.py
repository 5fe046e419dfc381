"""DensePose IUV for every person of a clip, composited into one map per frame.

Person boxes come from the shared RT-DETR detector + IoU tracker (`person_detect`); each box goes
through DensePose R-CNN R50-FPN (`densepose_rcnn`, torchvision parts, official detectron2
weights). Inference follows detectron2's: BGR minus the pixel mean at short side `min_size`
(800, long side capped at 1333), padded to a multiple of 32; per box the coarse segmentation
masks the argmax of the 25-way part segmentation, and U, V are read from the winning part's
channel, all resampled to the box's integer size in the frame (detectron2's `make_int_box`).

Output `raw["iuv"]` is uint8 (T, H, W, 3): I part 0..24 (0 background), U and V as
clamp(255 * uv) truncated, like DensePose's own quantisation. Overlapping people are composited
nearest-wins, with "nearest" taken as the box whose bottom edge is lowest in the frame (the person
standing closest to the camera on a ground plane), ties to the larger box. A clip with no person is
all zeros with `meta["no_person"]` true.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from annotators.base import Annotator, Resources, clip_frames
from annotators.person_detect import PersonDetector, PersonTracks
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import ModelUnavailable, load_registry, model_dir


@dataclass(frozen=True)
class DensePoseOptions:
    """`model`: a registered DensePose R-CNN checkpoint; `detector`: the registered person detector
    whose boxes it reads; `min_size`/`max_size`: detectron2's test-time resize."""

    model: str = "densepose-r50-fpn"
    detector: str = "rtdetr-r50"
    detection_threshold: float = 0.5
    min_size: int = 800
    max_size: int = 1333
    frame_batch_size: int = 4
    max_people: int = 8
    device: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_size <= self.max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if self.frame_batch_size < 1:
            raise ValueError(f"frame_batch_size must be >= 1, got {self.frame_batch_size}")


class DensePoseAnnotator(Annotator):
    """Per-frame composited DensePose IUV (see module docstring)."""

    name: ClassVar[str] = "densepose"
    Options: ClassVar[type] = DensePoseOptions
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=0.5, batch_size=2)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        self.device = o.device
        self.detector = PersonDetector(o.detector, o.detection_threshold, max_people=o.max_people, device=o.device)
        self.model = None

    def models(self) -> tuple[str, ...]:
        return (self.options.model, self.options.detector)

    def _weights(self) -> Path:
        """The checkpoint file the manifest names for the model, in its cache folder."""
        folder = model_dir(self.options.model)
        names = list(load_registry()[self.options.model].files) or sorted(
            p.name for p in folder.iterdir() if p.suffix in (".pkl", ".pth"))
        for name in names:
            if (folder / name).is_file():
                return folder / name
        raise ModelUnavailable(f"model {self.options.model!r}: none of {names or ['*.pkl', '*.pth']} in {folder}; "
                               f"fetch it with `openuni-models pull {self.options.model}`")

    def unavailable(self) -> str | None:
        try:
            self._weights()
        except ModelUnavailable as exc:
            return str(exc)
        return self.detector.unavailable()

    def load(self) -> None:
        from annotators.densepose_rcnn import load_densepose_rcnn

        from annotators.torch_device import pick_device  # torch only once a model loads

        self.device = pick_device(self.device or "auto")
        self.model = load_densepose_rcnn(self._weights()).to(self.device)
        self.detector.load()

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        outputs = []
        for clip in clips:
            frames = clip_frames(clip)
            tracks = self.detector.track(frames)
            outputs.append(ModalityOutput(raw={"iuv": self.iuv(frames, tracks)}, meta=tracks.meta()))
        return outputs

    def iuv(self, frames: np.ndarray, tracks: PersonTracks) -> np.ndarray:
        """Composited IUV (T, H, W, 3) uint8 for the tracked people of one clip."""
        import torch

        from annotators.densepose_rcnn import PIXEL_MEAN_BGR, SIZE_DIVISIBILITY

        T, H, W = frames.shape[:3]
        out = np.zeros((T, H, W, 3), np.uint8)
        todo = [t for t in range(T) if tracks.present[t].any()]
        scale, (h, w) = _test_size(H, W, self.options.min_size, self.options.max_size)
        mean = torch.tensor(PIXEL_MEAN_BGR, device=self.device).view(1, 3, 1, 1)
        pad_h, pad_w = -h % SIZE_DIVISIBILITY, -w % SIZE_DIVISIBILITY
        for start in range(0, len(todo), self.options.frame_batch_size):
            ids = todo[start:start + self.options.frame_batch_size]
            x = torch.from_numpy(frames[ids]).to(self.device).permute(0, 3, 1, 2).flip(1).float()
            x = torch.nn.functional.interpolate(x, (h, w), mode="bilinear", align_corners=False,
                                                antialias=scale < 1)
            x = torch.nn.functional.pad(x - mean, (0, pad_w, 0, pad_h))
            boxes = [torch.from_numpy(tracks.boxes[t][tracks.present[t]]).to(self.device) for t in ids]
            resize = torch.tensor([w / W, h / H, w / W, h / H], device=self.device)
            with torch.inference_mode():
                pred = self.model(x, [b * resize for b in boxes])
                first = 0
                for t, b in zip(ids, boxes):
                    sel = slice(first, first + len(b))
                    out[t] = paste_iuv(pred.coarse_segm[sel], pred.fine_segm[sel], pred.u[sel], pred.v[sel],
                                       b, H, W).cpu().numpy()
                    first += len(b)
        return out

    def provenance(self) -> dict[str, Any]:
        entry = load_registry()[self.options.model]
        return {"model": entry.hub_id, "revision": entry.revision, "implementation": "torchvision-native",
                "min_size": self.options.min_size, "max_size": self.options.max_size, "compositing": "lowest-box-bottom-wins",
                **self.detector.provenance()}


def _test_size(h: int, w: int, min_size: int, max_size: int) -> tuple[float, tuple[int, int]]:
    """detectron2's ResizeShortestEdge at test time: scale and (new_h, new_w)."""
    scale = min_size / min(h, w)
    if max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return scale, (int(h * scale + 0.5), int(w * scale + 0.5))


def paste_iuv(coarse, fine, u, v, boxes, height: int, width: int):
    """Composite per-box predictor outputs (k, C, S, S) into one (H, W, 3) uint8 IUV tensor.

    `boxes` (k, 4) xyxy in frame pixels. Boxes are painted far to near (bottom edge, then area,
    ascending), each over the pixels its own segmentation calls foreground.
    """
    import torch
    from torch.nn.functional import interpolate

    canvas = torch.zeros((height, width, 3), dtype=torch.uint8, device=boxes.device)
    bottom, area = boxes[:, 3], (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = sorted(range(len(boxes)), key=lambda i: (float(bottom[i]), float(area[i])))
    for i in order:
        x0, y0 = int(boxes[i, 0]), int(boxes[i, 1])
        bw = max(int(boxes[i, 2] - boxes[i, 0]), 1)
        bh = max(int(boxes[i, 3] - boxes[i, 1]), 1)
        size = lambda t: interpolate(t[i:i + 1], (bh, bw), mode="bilinear", align_corners=False)  # noqa: E731
        labels = size(fine).argmax(1) * (size(coarse).argmax(1) > 0)  # (1, bh, bw)
        uv = torch.cat([size(u).gather(1, labels[:, None]), size(v).gather(1, labels[:, None])], 1)[0]
        iuv = torch.cat([labels.to(torch.uint8), (uv * 255).clamp(0, 255).to(torch.uint8)])
        iuv = iuv * (labels > 0)  # U, V are only defined on the body
        # clip the box to the frame
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + bw, width), min(y0 + bh, height)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        patch = iuv[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].permute(1, 2, 0)
        region = canvas[cy0:cy1, cx0:cx1]
        fg = patch[..., :1] > 0
        canvas[cy0:cy1, cx0:cx1] = torch.where(fg, patch, region)
    return canvas
