"""Contact sheets: a few frames of a clip (columns) by its RGB and Pixelplanes videos (rows).

For eyeballing a build: alignment errors, flicker and wrong colour conventions show at a glance.
`python -m openuni_builder.previews SHARD.tar OUT_DIR [--max N]` writes one PNG per sample.
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

import cv2
import numpy as np

from openuni_builder.video_io import decode_mp4

LABEL_WIDTH = 96
HEADER = 20
GAP = 2


def contact_sheet(rgb: np.ndarray, planes: dict[str, np.ndarray], n_frames: int = 6) -> np.ndarray:
    """(rows, cols, 3) uint8 RGB grid: row 0 the RGB clip, then one row per plane, each labelled;
    columns are `n_frames` evenly spaced frame indices (first and last included)."""
    rows = {"rgb": rgb, **planes}
    shape = rgb.shape
    for name, video in rows.items():
        if video.ndim != 4 or video.shape != shape or video.dtype != np.uint8:
            raise ValueError(f"{name} must be (T, H, W, 3) uint8 like rgb {shape}, got "
                             f"{video.shape} {video.dtype}")
    t, h, w, _ = shape
    picks = np.unique(np.linspace(0, t - 1, max(1, min(n_frames, t))).round().astype(int))
    sheet = np.full((HEADER + len(rows) * (h + GAP), LABEL_WIDTH + len(picks) * (w + GAP), 3),
                    255, np.uint8)
    for col, index in enumerate(picks):
        _text(sheet, f"t={index}", (LABEL_WIDTH + col * (w + GAP) + 4, HEADER - 6))
    for row, (name, video) in enumerate(rows.items()):
        top = HEADER + row * (h + GAP)
        _text(sheet, name, (4, top + h // 2 + 5))
        for col, index in enumerate(picks):
            left = LABEL_WIDTH + col * (w + GAP)
            sheet[top:top + h, left:left + w] = video[index]
    return sheet


def _text(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG (OpenCV writes BGR, hence the swap)."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write PNG {path}")


def sample_contact_sheet(members: dict[str, bytes], n_frames: int = 6) -> np.ndarray:
    """Contact sheet of one shard sample given as {suffix: bytes} ("mp4", "depth.mp4", ...)."""
    if "mp4" not in members:
        raise ValueError(f"sample has no RGB 'mp4' member, only {sorted(members)}")
    planes = {suffix[:-len(".mp4")]: decode_mp4(data) for suffix, data in sorted(members.items())
              if suffix.endswith(".mp4") and suffix != "mp4"}
    return contact_sheet(decode_mp4(members["mp4"]), planes, n_frames)


def shard_samples(path: str | Path) -> dict[str, dict[str, bytes]]:
    """All samples of a WebDataset tar as {key: {suffix: bytes}} (key = name up to the first dot)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for info in tar:
            if info.isfile():
                name = info.name.rsplit("/", 1)[-1]
                key, _, suffix = name.partition(".")
                samples.setdefault(key, {})[suffix] = tar.extractfile(info).read()
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard", help="a WebDataset .tar written by the build")
    parser.add_argument("out_dir", help="folder for KEY.png contact sheets")
    parser.add_argument("--max", type=int, default=4, help="samples to render (default 4)")
    parser.add_argument("--frames", type=int, default=6, help="frames per row (default 6)")
    args = parser.parse_args(argv)
    for key, members in list(shard_samples(args.shard).items())[:args.max]:
        save_png(Path(args.out_dir) / f"{key}.png", sample_contact_sheet(members, args.frames))
        print(Path(args.out_dir) / f"{key}.png")


if __name__ == "__main__":
    main()
