"""Every video under a directory, split into shots with PySceneDetect's ContentDetector.

Shot detection runs while listing (on the driver) because it decides how many clips a video gives.
One clip is cut from the middle of each shot; a video with no detected cut is one shot. Shots
shorter than the clip spec are still listed, so they appear in the ledger with their reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.location import local_file
from openuni_builder.sources.base import VIDEO_EXTENSIONS, SourceContext, SourceError

log = logging.getLogger(__name__)


class Folder:
    name = "folder"

    def __init__(self, threshold: float = 27.0) -> None:
        self.threshold = threshold

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        if ctx.input is None or not ctx.input.is_dir():
            raise SourceError(f"--source folder needs --input DIR (a directory of videos), got {ctx.input}")
        videos = sorted(p for p in ctx.input.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        for path in videos:
            video_id = str(path.relative_to(ctx.input).with_suffix(""))
            with local_file(str(path), ctx.options) as local:
                shots = self.shots(Path(local))
            for index, (start, end) in enumerate(shots):
                yield ClipRequest(source=self.name, video_id=video_id, path=str(path),
                                  start=start, end=end, clip_index=index,
                                  extra={"shot": [start, end]})

    def shots(self, path: Path) -> list[tuple[float | None, float | None]]:
        """(start, end) seconds of each shot; [(None, None)] when detection cannot read the file
        (the decode stage then records the real reason)."""
        from scenedetect import ContentDetector, detect

        try:
            scenes = detect(str(path), ContentDetector(threshold=self.threshold))
        except Exception as exc:  # unreadable file: leave the reason to the decode stage
            log.warning("shot detection failed on %s (%s); treating it as one shot", path, exc)
            return [(None, None)]
        if not scenes:
            return [(None, None)]
        return [(s.seconds, e.seconds) for s, e in scenes]
