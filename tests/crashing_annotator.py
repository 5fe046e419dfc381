"""An annotator that kills its own worker process on chosen clips, or hangs on them: the faults a
segfaulting model, an OOM kill or a stuck decoder cause. Registered for the tests through
OPENUNI_ANNOTATORS (tests/conftest.py), as an out-of-tree annotator would be."""

from __future__ import annotations

import os
import time
from typing import Any

from annotators.base import Annotator, Resources
from openuni_builder.clip import Clip, ModalityOutput


class CrashingAnnotator(Annotator):
    name = "crashing"
    video = False
    default_resources = Resources(num_cpus=0.5, batch_size=2)

    def __init__(self, crash_on: tuple[str, ...] = (), hang_on: tuple[str, ...] = (), **options: Any) -> None:
        super().__init__(crash_on=crash_on, hang_on=hang_on, **options)
        self.crash_on, self.hang_on = set(crash_on), set(hang_on)

    def load(self) -> None:
        pass

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        for clip in clips:
            if clip.request.video_id in self.crash_on:
                os._exit(3)  # no exception, no cleanup: the process is simply gone
            if clip.request.video_id in self.hang_on:
                time.sleep(3600)
        return [ModalityOutput(meta={"frames": len(c.frames)}) for c in clips]
