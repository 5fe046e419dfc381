"""Frame-exact clip cutting, spec normalisation, and in-memory mp4 encode/decode, all on PyAV.

Cutting is by presentation time, never by whole seconds: the k-th output frame shows the source
frame on screen at `window_start + k / spec.fps` (the last frame whose timestamp is <= that time).
Decoding streams from the nearest keyframe before the window and keeps one previous frame plus the
already-resized output frames, so memory does not grow with the length of the source.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from openuni_builder.clip import ClipSpec


class BadVideo(ValueError):
    """A video or time range that cannot give a clip; the message is the ledger reason."""


#: The filter name a too-short segment is dropped under (ledger/filtered.jsonl).
TOO_SHORT = "too_short"


class TooShort(BadVideo):
    """A whole, readable segment shorter than the clip spec: a property of the data, recorded as
    a drop (filter `too_short`), not a failure for --retry-failed to retry forever."""

    def __init__(self, message: str, duration: float, needed: float) -> None:
        super().__init__(message)
        self.duration, self.needed = duration, needed


@dataclass(frozen=True)
class VideoEncoding:
    """How a video member is stored. `pix_fmt` yuv420p is the normal RGB clip; yuv444p keeps
    chroma at full resolution for flat-colour Pixelplanes; `codec="libx264rgb", qp=0` is lossless,
    and so is `codec="ffv1", pix_fmt="bgr0"` (which has no preset: pass `preset=None`)."""

    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    crf: int | None = 18
    qp: int | None = None
    preset: str | None = "veryfast"

    def options(self, width: int) -> dict[str, str]:
        """The encoder's options for frames `width` pixels wide."""
        # One encoder thread: a build already runs one clip per CPU, x264's frame threads cost
        # CPU (a 49x256² RGB clip: 0.287 vs 0.381 CPU s, lossless flow 0.367 vs 0.411), and its
        # output depends on the thread count, which follows the cores each worker sees; with one
        # thread a clip encodes to the same bytes on every node.
        opts = {"threads": "1", **({"preset": self.preset} if self.preset else {})}
        if self.qp is not None:
            opts["qp"] = str(self.qp)
        elif self.crf is not None:
            opts["crf"] = str(self.crf)
            if self.codec.startswith("libx264") and -(-width // 16) % 2:
                # The wheel's x264 (core 165) reads uninitialised memory in its macroblock-tree
                # lookahead when a frame is an odd number of macroblocks wide (valgrind: 4-8
                # errors per clip at 48, 80, 112, 144, 208 and 240 px wide, none at 32, 64, 96,
                # 128 or 256), so the same frames gave other bytes now and then (1-6% of encodes
                # in a worker that also decodes). Without the tree they encode the same every
                # time; the clip costs 7-11% more bytes at the same PSNR (bikes.mp4, CRF 18).
                opts["x264-params"] = "mbtree=0"
        return opts


RGB_ENCODING = VideoEncoding()


def probe(path: str | Path) -> dict:
    """Duration, fps, size and frame count of the first video stream (metadata only, no decode)."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        duration = _stream_duration(container, stream)
        frames = stream.frames or (int(round(duration * fps)) if fps else 0)
        return {"fps": fps, "duration": duration, "width": stream.codec_context.width,
                "height": stream.codec_context.height, "frames": frames, "codec": stream.codec_context.name}


def cut_clip(path: str | Path, spec: ClipSpec, start: float | None = None,
             end: float | None = None) -> tuple[np.ndarray, dict]:
    """Decode the spec's frames from [start, end] of `path`, resized and centre-cropped.

    The window of `spec.duration` seconds is centred in [start, end] (away from the shot
    boundaries a segment usually starts and ends on). Returns frames (T, H, W, 3) uint8 RGB and
    info with the source fps, size and the timestamp of every source frame used.
    Raises BadVideo with a readable reason for every kind of unusable input.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        # Slice threads only: frame threads cost as much CPU or more (bikes.mp4: 0.39-0.83 vs
        # 0.39-0.40 CPU s), and the build already decodes one clip per CPU.
        stream.thread_type = "SLICE"
        duration = _stream_duration(container, stream)
        src_fps = float(stream.average_rate or stream.guessed_rate or 0)
        seg_start = 0.0 if start is None else float(start)
        seg_end = duration if end is None else float(end)
        if seg_end <= seg_start:
            raise BadVideo(f"time range is empty or reversed: start={seg_start:.3f}s end={seg_end:.3f}s")
        if duration and seg_start >= duration:
            raise BadVideo(f"start {seg_start:.3f}s is beyond the video's end ({duration:.3f}s)")
        if duration and seg_end > duration + 0.5:
            raise BadVideo(f"end {seg_end:.3f}s is beyond the video's end ({duration:.3f}s)")
        seg_end = min(seg_end, duration) if duration else seg_end
        slack = 0.5 / src_fps if src_fps else 0.0
        if seg_end - seg_start + slack < spec.duration:
            raise TooShort(f"segment is {seg_end - seg_start:.3f}s but the spec needs {spec.duration:.3f}s "
                           f"({spec.num_frames} frames at {spec.fps:g} fps)", round(seg_end - seg_start, 4),
                           round(spec.duration, 4))
        window = seg_start + max(0.0, (seg_end - seg_start - spec.duration) / 2)
        targets = window + np.arange(spec.num_frames) / spec.fps
        frames, used = _decode_at(container, stream, targets, spec, slack, duration)
    info = {"src_fps": src_fps, "src_duration": duration, "src_width": stream.codec_context.width,
            "src_height": stream.codec_context.height, "window_start": float(window),
            "frame_times": [round(t, 6) for t in used]}
    return frames, info


def _decode_at(container, stream, targets: np.ndarray, spec: ClipSpec, slack: float,
               duration: float = 0.0) -> tuple[np.ndarray, list[float]]:
    """Stream-decode and pick, for each target time, the last frame shown at or before it.

    Only picked frames are converted and resized; one decoded frame (the candidate) is held.
    """
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    seek_to = max(0.0, targets[0] - 1.0) + origin
    if seek_to > origin:
        container.seek(int(seek_to / stream.time_base), stream=stream, backward=True, any_frame=False)
    out = np.empty((len(targets), spec.height, spec.width, 3), np.uint8)
    used: list[float] = []
    cand, cand_t, cand_rgb = None, None, None
    k, eps = 0, 1e-6

    def emit() -> None:
        nonlocal k, cand_rgb
        if cand_rgb is None:
            cand_rgb = frame_rgb(cand, spec)
        out[k] = cand_rgb
        used.append(cand_t)
        k += 1

    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base) - origin
            while k < len(targets) and cand is not None and t > targets[k] + eps:
                emit()
            if k == len(targets):
                break
            if t <= targets[k] + eps or cand is None:
                cand, cand_t, cand_rgb = frame, t, None
    except av.FFmpegError as exc:
        if cand is None:
            raise BadVideo(f"cannot decode video: {exc}") from exc
    # Past the last decoded frame, it stays on screen for one source frame duration.
    while k < len(targets) and cand is not None and targets[k] <= cand_t + max(2 * slack, 1e-3) + eps:
        emit()
    if k < len(targets):
        stopped = cand_t if cand_t is not None else 0.0
        if duration and stopped < duration - 4 * slack - 0.05:  # the container promised more
            raise BadVideo(f"file truncated: decoded frames stop at {stopped:.2f}s of the {duration:.2f}s "
                           "the container declares")
        raise BadVideo(f"video has too few frames: got {k} of {len(targets)} needed "
                       f"(last decoded frame at {cand_t if cand_t is not None else 'none'}s)")
    return out, used


def cover_size(height: int, width: int, spec: ClipSpec) -> tuple[int, int]:
    """The (height, width) a frame is scaled to so that it covers the spec's size, aspect kept."""
    scale = max(spec.height / height, spec.width / width)
    return max(spec.height, round(height * scale)), max(spec.width, round(width * scale))


def center_crop(rgb: np.ndarray, spec: ClipSpec) -> np.ndarray:
    nh, nw = rgb.shape[:2]
    top, left = (nh - spec.height) // 2, (nw - spec.width) // 2
    return np.ascontiguousarray(rgb[top:top + spec.height, left:left + spec.width])


def resize_crop(rgb: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Scale an RGB array so it covers (height, width), then centre-crop; INTER_AREA when shrinking."""
    h, w = rgb.shape[:2]
    nh, nw = cover_size(h, w, spec)
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
    return center_crop(rgb, spec)


def frame_rgb(frame: av.VideoFrame, spec: ClipSpec) -> np.ndarray:
    """A decoded frame as the spec's RGB: `resize_crop`'s geometry, but scaled by swscale in the
    same pass that converts it to RGB (area averaging when shrinking, bilinear when growing).
    A 1280x720 source frame never exists as full-size RGB: a 49-frame clip of bigbuckbunny.mp4
    costs 0.36 instead of 0.60 CPU s to decode and resize. One thread: the build decodes one
    clip per CPU."""
    nh, nw = cover_size(frame.height, frame.width, spec)
    interpolation = "AREA" if nh < frame.height else "BILINEAR"
    return center_crop(frame.to_ndarray(width=nw, height=nh, format="rgb24", interpolation=interpolation,
                                        threads=1), spec)


def encode_mp4(frames: np.ndarray, fps: float, encoding: VideoEncoding = RGB_ENCODING) -> bytes:
    """Encode (T, H, W, 3) uint8 RGB frames to mp4 bytes in memory, one output frame per input."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frame size must be even for H.264, got {w}x{h}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(encoding.codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, encoding.pix_fmt
        stream.options = encoding.options(w)
        src_fmt = "rgb24"
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format=src_fmt)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


def decode_mp4(data: bytes) -> np.ndarray:
    """Decode mp4 bytes to (T, H, W, 3) uint8 RGB (WebDataset's own video decoder relies on a
    torchvision function that no longer exists, so readers of the shards use this)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def _open(path: str | Path):
    p = Path(path)
    if not p.exists():
        raise BadVideo(f"file not found: {p}")
    if p.is_file() and p.stat().st_size == 0:  # a pipe or device has no size, and may still stream a video
        raise BadVideo(f"file is empty (0 bytes): {p}")
    try:
        return av.open(str(p))
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        # An mp4 cut short loses its index (moov) when that comes last, as FFmpeg writes it.
        raise BadVideo(f"not a readable video file: corrupt or truncated ({type(exc).__name__}: {exc})") from exc


def _video_stream(container, path) -> "av.video.stream.VideoStream":
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise BadVideo(f"no video stream in {Path(path).name} (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        # FFmpeg opens a JPEG or PNG (whatever its name says) as a one-frame "video" without
        # timestamps, which used to surface as "time range is empty": say what it is.
        raise BadVideo(f"no video stream in {Path(path).name}: a still image ({stream.codec_context.name})")
    return stream


def _stream_duration(container, stream) -> float:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0
