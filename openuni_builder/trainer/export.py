"""Export a build to other trainers' layouts: `openuni-export --format unityvideo OUT/ DEST/`.

UnityVideo's released trainer reads one CSV per modality with columns `video, prompt, <modality>`,
where both video columns name temporally aligned mp4s. This writes
  DEST/videos/KEY.mp4              the RGB clip (the shard's bytes, not re-encoded)
  DEST/<modality>/KEY.mp4          the modality's Pixelplanes video
  DEST/<modality>.csv              video, prompt, <modality>  (paths relative to DEST)
with UnityVideo's modality names (our `flow` is its `raft`, our `seg` its `segmentation`).
Every pair is checked for equal frame counts (container metadata only) as it is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from openuni_builder.location import location
from openuni_builder.modalities import modalities
from openuni_builder.trainer.data import iter_samples
from openuni_builder.video_io import probe

# Our modality name -> UnityVideo's (its CSV and column), from the modality records.
UNITYVIDEO_NAMES = {m.name: m.export_name for m in modalities().values() if m.export_name}


def export_unityvideo(build: str | Path, dest: str | Path, absolute: bool = False) -> dict[str, Path]:
    """Write the UnityVideo layout for every sample of `build`; returns {modality name: csv path}."""
    build, dest = location(build), Path(dest)
    shards = build / "shards" if (build / "shards").is_dir() else build
    (dest / "videos").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, str]]] = {name: [] for name in UNITYVIDEO_NAMES.values()}

    def ref(path: Path) -> str:
        return str(path.resolve()) if absolute else str(path.relative_to(dest))

    for sample in iter_samples(shards):
        key, meta = sample["__key__"], json.loads(sample["json"])
        caption = sample.get("txt", b"").decode().strip() or str(meta.get("caption") or "")
        video = dest / "videos" / f"{key}.mp4"
        video.write_bytes(sample["mp4"])
        frames = probe(video)["frames"]
        for ours, theirs in UNITYVIDEO_NAMES.items():
            if f"{ours}.mp4" not in sample:
                continue
            target = dest / theirs / f"{key}.mp4"
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(sample[f"{ours}.mp4"])
            if probe(target)["frames"] != frames:
                raise ValueError(f"sample {key}: {ours} video has {probe(target)['frames']} frames, RGB has {frames}")
            rows[theirs].append({"video": ref(video), "prompt": caption, theirs: ref(target)})
    written = {}
    for name, table in rows.items():
        if table:
            written[name] = dest / f"{name}.csv"
            pd.DataFrame(table, columns=["video", "prompt", name]).to_csv(written[name], index=False)
    if not written:
        raise ValueError(f"no modality videos in the shards under {shards}: nothing to export")
    return written
