"""UnityVideo-style video DiT: RGB and one modality video in one token sequence.

- Both streams are 3D-patchified by the same Conv3d and get the same 3D sin-cos position code,
  then are concatenated into one sequence: every block's self-attention is shared, so RGB tokens
  and modality tokens of the same place and time see each other.
- Modality switcher: a learnable embedding per stream (index 0 = RGB, 1.. = MODALITIES) is added
  to that stream's timestep embedding; AdaLN-Zero (shift, scale, gate) of the stream's tokens is
  computed from it. One set of weights thus behaves as a depth, flow, ... model by switching the
  embedding.
- In-context learner: a cross-attention with ONE set of weights, used twice per block: RGB tokens
  attend to the content caption, modality tokens attend to the modality-type prompt.
The network predicts the rectified-flow velocity of each stream (see flow.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from openuni_builder.modalities import trainable

# The trainable modalities in switcher-slot order (their records' `trainer_index`).
MODALITIES = tuple(m.name for m in trainable())
Context = tuple[torch.Tensor, torch.Tensor]  # text token states (B, L, D) and mask (B, L), True = token


@dataclass
class DiTConfig:
    in_channels: int = 3
    patch: tuple[int, int, int] = (1, 4, 4)
    hidden: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Sin-cos code (N, dim) of positions `pos` (N,); dim must be even."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    angles = pos.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_3d(t: int, h: int, w: int, dim: int) -> torch.Tensor:
    """Position code (t*h*w, dim) of a token grid, t-major like `flatten(2)`: a third per axis."""
    axis_dim = 2 * (dim // 6)
    grid = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    parts = [sincos_1d(g.flatten(), axis_dim) for g in grid]
    parts.append(torch.zeros(t * h * w, dim - 3 * axis_dim))
    return torch.cat(parts, dim=1)


def timestep_embedding(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Sinusoidal code of flow times t in [0, 1] (scaled to 0..1000 like diffusion steps)."""
    return sincos_1d(t * 1000.0, dim)


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None, cross-attention otherwise."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = (y.view(b, context.shape[1], self.heads, -1).transpose(1, 2) for y in self.kv(context).chunk(2, -1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def per_token(params: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
    """Broadcast one (B, K) vector per stream to that stream's tokens: (B, sum(sizes), K)."""
    return torch.cat([p[:, None].expand(-1, n, -1) for p, n in zip(params, sizes)], dim=1)


class Block(nn.Module):
    """Shared self-attention, per-stream cross-attention (shared weights), MLP; AdaLN-Zero per stream."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, conds: list[torch.Tensor], sizes: list[int],
                contexts: list[Context]) -> torch.Tensor:
        mod = per_token([self.ada(c) for c in conds], sizes)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1)
        streams = self.norm2(x).split(sizes, dim=1)
        x = x + torch.cat([self.cross(s, ctx, mask) for s, (ctx, mask) in zip(streams, contexts)], dim=1)
        return x + gate2 * self.mlp(self.norm3(x) * (1 + scale2) + shift2)


class FinalLayer(nn.Module):
    """AdaLN (shift, scale) then a linear map from each token back to its patch of the input."""

    def __init__(self, dim: int, patch_values: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, patch_values)

    def forward(self, x: torch.Tensor, conds: list[torch.Tensor], sizes: list[int]) -> torch.Tensor:
        shift, scale = per_token([self.ada(c) for c in conds], sizes).chunk(2, dim=-1)
        return self.linear(self.norm(x) * (1 + scale) + shift)


class UnityDiT(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden {cfg.hidden} must be divisible by heads {cfg.heads}")
        self.cfg = cfg
        d, (pt, ph, pw) = cfg.hidden, cfg.patch
        self.patch_embed = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch, stride=cfg.patch)
        self.t_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.switcher = nn.Embedding(1 + len(MODALITIES), d)
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d))
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(d, pt * ph * pw * cfg.in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for emb in (self.switcher.weight, self.t_embed[0].weight, self.t_embed[2].weight):
            nn.init.normal_(emb, std=0.02)
        for ada in [b.ada[-1] for b in self.blocks] + [self.final.ada[-1], self.final.linear]:
            nn.init.zeros_(ada.weight)  # AdaLN-Zero: every block starts as the identity
            nn.init.zeros_(ada.bias)

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        shape, patch = x.shape[2:], self.cfg.patch
        if any(s % p for s, p in zip(shape, patch)):
            raise ValueError(f"input (T, H, W) = {tuple(shape)} is not divisible by the patch {patch}")
        tok = self.patch_embed(x)
        grid = tuple(tok.shape[2:])
        pos = sincos_3d(*grid, self.cfg.hidden).to(tok)
        return tok.flatten(2).transpose(1, 2) + pos, grid

    def _unpatchify(self, y: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        (t, h, w), (pt, ph, pw), c = grid, self.cfg.patch, self.cfg.in_channels
        y = y.reshape(y.shape[0], t, h, w, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return y.reshape(y.shape[0], c, t * pt, h * ph, w * pw)

    def forward(self, rgb: torch.Tensor, t_rgb: torch.Tensor, caption: Context,
                mod: torch.Tensor | None = None, t_mod: torch.Tensor | None = None,
                modality: torch.Tensor | None = None, prompt: Context | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Velocities for `rgb` and (if given) `mod`, both (B, C, T, H, W) latents.

        t_*: (B,) flow times in [0, 1] (0 = clean: the stream is context, not denoised).
        modality: (B,) indices into MODALITIES. caption/prompt: text token states and masks.
        """
        streams = [(rgb, t_rgb, torch.zeros_like(t_rgb, dtype=torch.long), caption)]
        if mod is not None:
            if t_mod is None or modality is None or prompt is None:
                raise ValueError("a modality stream needs t_mod, modality and prompt")
            streams.append((mod, t_mod, modality + 1, prompt))
        tokens, grids, conds, contexts = [], [], [], []
        for x, t, index, (states, mask) in streams:
            tok, grid = self._tokens(x)
            tokens.append(tok)
            grids.append(grid)
            conds.append(self.t_embed(timestep_embedding(t).to(tok)) + self.switcher(index))
            contexts.append((self.text_proj(states.to(tok)), mask))
        sizes = [tok.shape[1] for tok in tokens]
        h = torch.cat(tokens, dim=1)
        for block in self.blocks:
            h = block(h, conds, sizes, contexts)
        out = self.final(h, conds, sizes).split(sizes, dim=1)
        velocities = [self._unpatchify(y, g) for y, g in zip(out, grids)]
        return velocities[0], (velocities[1] if mod is not None else None)
