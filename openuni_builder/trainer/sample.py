"""Sample from a checkpoint: `openuni-sample --checkpoint RUN/checkpoint.pt --task est --shards OUT/shards`.

cond: the modality video of a shard sample is given, RGB is generated; est: the RGB clip is given,
the modality is estimated; joint: both are generated from the caption; rgb: RGB only. Each
result is written as one mp4 with RGB on the left and the modality's Pixelplanes video on the right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from openuni_builder.trainer.flow import generate
from openuni_builder.trainer.model import MODALITIES
from openuni_builder.trainer.text import MODALITY_PROMPTS
from openuni_builder.trainer.train import Config, Run


def load_run(checkpoint: str | Path, device: str = "cpu") -> Run:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    run = Run(Config.from_dict(state["config"]), device)
    run.restore(checkpoint)
    return run


def to_frames(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


@torch.no_grad()
def sample(run: Run, task: str, batch: dict, steps: int = 25, seed: int = 0, use_ema: bool = True,
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Generate the noised streams of `task` for a collated batch; returns decoded videos in [-1, 1]."""
    model = (run.ema.module if use_ema else run.model).eval()
    dev = run.device
    rgb = run.latent.encode(batch["rgb"].to(dev)) if task == "est" else None
    mod = run.latent.encode(batch["mod"].to(dev)) if task == "cond" else None
    shape = tuple(run.latent.encode(torch.zeros_like(batch["rgb"][:1]).to(dev)).shape)
    shape = (len(batch["caption"]), *shape[1:])
    modality = prompt = None
    if task != "rgb":
        modality = batch["modality"].to(dev)
        prompt = run.text([MODALITY_PROMPTS[MODALITIES[i]] for i in batch["modality"].tolist()], dev)
    generator = torch.Generator().manual_seed(seed)
    with run.autocast():
        rgb, mod = generate(model, task, shape, run.text(batch["caption"], dev), rgb, mod, modality, prompt,
                            steps, generator)
    return run.latent.decode(rgb.float()), None if mod is None else run.latent.decode(mod.float())
