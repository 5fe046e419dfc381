"""Where the DiT works: pixel space (the default, for toy sizes) or a pretrained video VAE's latents.

Both streams (RGB and the modality's Pixelplanes video) go through the same autoencoder, as in
UnityVideo, so the DiT sees one kind of token. An autoencoder maps videos (B, 3, T, H, W) in
[-1, 1] to latents (B, C, T', H', W') and back; `channels` tells the DiT its input width.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from openuni_builder.models import model_dir


class PixelSpace(nn.Module):
    """The identity autoencoder: the DiT denoises pixels directly (fine at 32-64 px)."""

    channels = 3

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.clamp(-1, 1)


class PretrainedVAE(nn.Module):
    """A frozen diffusers-style video VAE (e.g. Wan's AutoencoderKLWan) from the model cache.

    `model` is a name registered in manifests/models.toml (or a local folder); `cls` its class.
    Latents are normalised per channel with the VAE's `latents_mean`/`latents_std` when its config
    has them (Wan), else multiplied by `scaling_factor`, so the DiT sees roughly unit variance.
    """

    def __init__(self, model: str, cls: str = "diffusers:AutoencoderKLWan") -> None:
        super().__init__()
        module, name = cls.split(":")
        klass = getattr(importlib.import_module(module), name)
        folder = Path(model) if Path(model).is_dir() else model_dir(model)
        self.vae = klass.from_pretrained(folder).eval().requires_grad_(False)
        config = self.vae.config
        self.channels = int(getattr(config, "z_dim", None) or config.latent_channels)
        mean = getattr(config, "latents_mean", None)
        std = getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            shape = (1, self.channels, 1, 1, 1)
            self.register_buffer("mean", torch.tensor(mean[:self.channels]).view(shape), persistent=False)
            self.register_buffer("std", torch.tensor(std[:self.channels]).view(shape), persistent=False)
        else:
            scale = float(getattr(config, "scaling_factor", 1.0))
            self.register_buffer("mean", torch.zeros(()), persistent=False)
            self.register_buffer("std", torch.tensor(1.0 / scale), persistent=False)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return (self.vae.encode(video).latent_dist.mode() - self.mean) / self.std

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent * self.std + self.mean).sample.clamp(-1, 1)


def load_autoencoder(spec: str | dict[str, Any] | None) -> nn.Module:
    """`None`/"pixel" -> PixelSpace; {"model": NAME, "cls": "module:Class"} -> PretrainedVAE."""
    if spec in (None, "pixel"):
        return PixelSpace()
    if isinstance(spec, dict) and "model" in spec:
        return PretrainedVAE(**spec)
    raise ValueError(f"latent must be 'pixel' or {{model: NAME, cls: 'module:Class'}}, got {spec!r}")
