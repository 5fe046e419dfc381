"""An annotator that kills its own worker process on chosen clips, or hangs on them: the faults a
segfaulting model, an OOM kill or a stuck decoder cause. Registered for the tests through
OPENUNI_PLUGINS (tests/conftest.py), as an out-of-tree modality would be: one record, no codec
(it adds JSON only)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from annotators.base import Annotator, Resources
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.modalities import Modality, register


@dataclass(frozen=True)
class CrashingOptions:
    crash_on: tuple[str, ...] = ()  # video ids whose clip kills the worker
    hang_on: tuple[str, ...] = ()  # video ids whose clip hangs it


class CrashingAnnotator(Annotator):
    name = "crashing"
    default_resources = Resources(num_cpus=0.5, batch_size=2)

    Options = CrashingOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.crash_on, self.hang_on = set(self.options.crash_on), set(self.options.hang_on)

    def load(self) -> None:
        pass

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        for clip in clips:
            if clip.request.video_id in self.crash_on:
                os._exit(3)  # no exception, no cleanup: the process is simply gone
            if clip.request.video_id in self.hang_on:
                time.sleep(3600)
        return [ModalityOutput(meta={"frames": len(c.frames)}) for c in clips]


register(Modality("crashing", f"{__name__}:CrashingAnnotator", "fault injection for the crash tests"))
