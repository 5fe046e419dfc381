"""Training clips straight from the WebDataset shards the builder writes (docs/FORMAT.md).

Each sample yields the RGB clip plus ONE modality video picked at random among the modalities the
sample has (and the config asks for), so over many steps the model sees every modality. Frame
sampling (start, stride) and resizing (scale + centre crop) are computed once per sample and
applied to both videos, which keeps them frame-aligned and pixel-aligned.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import webdataset as wds

from openuni_builder.clip import ClipSpec
from openuni_builder.location import location, shard_files, webdataset_reads_uris
from openuni_builder.trainer.model import MODALITIES
from openuni_builder.video_io import decode_mp4, resize_crop


@dataclass
class DataConfig:
    num_frames: int = 9
    height: int = 32
    width: int = 32
    frame_stride: int = 1
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    batch_size: int = 4
    num_workers: int = 0
    shuffle: int = 64

    def __post_init__(self) -> None:
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {', '.join(MODALITIES)}")
        ClipSpec(self.num_frames, 1.0, self.height, self.width)  # validates 4k+1 frames and the size


def shard_urls(shards: str | Path | list[str]) -> list[str]:
    """Shard paths from a shard folder (`OUT/shards`), one tar, or a list of tars; each local or at
    a URI (s3://..., configured the standard way: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""
    if isinstance(shards, (list, tuple)):
        urls = [str(s) for s in shards]
    elif location(shards).is_dir():
        urls = shard_files(shards)
    else:
        urls = [str(shards)]
    missing = [u for u in urls if not location(u).is_file()]
    if not urls or missing:
        raise FileNotFoundError(f"no WebDataset shards at {shards}" + (f" (missing: {missing[:3]})" if missing else ""))
    webdataset_reads_uris()
    return urls


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def frame_indices(available: int, cfg: DataConfig, rng: random.Random | None) -> np.ndarray:
    """`num_frames` indices `frame_stride` apart; a random start when `rng` is given, else 0."""
    span = (cfg.num_frames - 1) * cfg.frame_stride + 1
    if available < span:
        raise ValueError(f"clip has {available} frames but the config needs {span} "
                         f"({cfg.num_frames} frames, stride {cfg.frame_stride})")
    start = rng.randint(0, available - span) if rng is not None else 0
    return start + cfg.frame_stride * np.arange(cfg.num_frames)


def load_sample(sample: dict[str, Any], cfg: DataConfig, rng: random.Random | None = None,
                modality: str | None = None) -> dict[str, Any]:
    """Decode one shard sample into training tensors.

    rng None = deterministic (first frames, first modality present, or `modality` if given).
    Returns key, caption, fps, rgb (3, T, H, W); plus modality (index into MODALITIES) and mod
    (3, T, H, W) when the config asks for modalities.
    """
    key = sample["__key__"]
    meta = json.loads(sample["json"])
    # An empty caption (no source caption, no caption model in the build) trains the
    # unconditional case, as classifier-free guidance does on purpose.
    caption = sample.get("txt", b"").decode().strip() or str(meta.get("caption") or "").strip()
    rgb = decode_mp4(sample["mp4"])
    idx = frame_indices(len(rgb), cfg, rng)
    spec = ClipSpec(cfg.num_frames, float(meta.get("fps") or 1.0), cfg.height, cfg.width)
    out: dict[str, Any] = {"key": key, "caption": caption, "fps": spec.fps,
                           "rgb": video_tensor(np.stack([resize_crop(f, spec) for f in rgb[idx]]))}
    if not cfg.modalities:
        return out
    present = [m for m in cfg.modalities if m in meta.get("modalities", {}) and f"{m}.mp4" in sample]
    if modality is None:
        if not present:
            raise ValueError(f"sample {key} has none of the modalities {cfg.modalities} "
                             f"(it has {sorted(meta.get('modalities', {}))}); set data.modalities to what the build made")
        modality = rng.choice(present) if rng is not None else present[0]
    elif modality not in present:
        raise ValueError(f"sample {key} has no {modality!r} video (it has {present})")
    mod = decode_mp4(sample[f"{modality}.mp4"])
    if len(mod) != len(rgb):
        raise ValueError(f"sample {key}: {modality} video has {len(mod)} frames but the RGB clip has {len(rgb)}")
    out["modality"] = MODALITIES.index(modality)
    out["mod"] = video_tensor(np.stack([resize_crop(f, spec) for f in mod[idx]]))
    return out


class _Sampler:
    """Picklable map stage. Its rng is made on first use inside each DataLoader worker from
    `torch.initial_seed()`, which the DataLoader makes distinct per worker."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.rng: random.Random | None = None

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.rng is None:
            self.rng = random.Random(torch.initial_seed())
        return load_sample(sample, self.cfg, self.rng)


def training_loader(shards: str | Path | list[str], cfg: DataConfig, seed: int = 0) -> torch.utils.data.DataLoader:
    """Endless loader of batches: resampled shards, split by node and worker, shuffled samples."""
    dataset = (wds.WebDataset(shard_urls(shards), resampled=True, shardshuffle=False, seed=seed,
                              nodesplitter=wds.split_by_node, workersplitter=wds.split_by_worker)
               .shuffle(cfg.shuffle)
               .map(_Sampler(cfg)))
    return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                       persistent_workers=cfg.num_workers > 0)


def iter_samples(shards: str | Path | list[str]) -> Iterator[dict[str, Any]]:
    """Every raw sample once, in shard order (export, sampling inputs, held-out sets)."""
    yield from wds.WebDataset(shard_urls(shards), shardshuffle=False, nodesplitter=None, workersplitter=None)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch `load_sample` outputs the way the DataLoader does."""
    return torch.utils.data.default_collate(samples)
