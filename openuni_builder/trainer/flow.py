"""Rectified flow over two streams, and the tasks that decide which stream is noised.

z_t = (1 - t) x + t eps, the network predicts v = eps - x, and sampling integrates dz/dt = v
from t = 1 (noise) to t = 0 (data) with Euler steps. A stream that is *given* (the modality in
conditional generation, the RGB clip in modality estimation) stays clean with t = 0 and carries
no loss: it is in-context information, not a target.
"""

from __future__ import annotations

import torch

from openuni_builder.trainer.model import Context, UnityDiT

# Which streams each task noises. "rgb" is plain text-to-video with no modality stream at all.
NOISED = {"cond": ("rgb",), "est": ("mod",), "joint": ("rgb", "mod"), "rgb": ("rgb",)}
TASKS = tuple(NOISED)


def logit_normal(n: int, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Flow times t = sigmoid(N(mean, std)): most samples at mid noise levels (SD3's choice)."""
    return torch.sigmoid(torch.randn(n, generator=generator) * std + mean).to(device)


def flow_loss(model: UnityDiT, task: str, rgb: torch.Tensor, caption: Context, t: torch.Tensor,
              mod: torch.Tensor | None = None, modality: torch.Tensor | None = None,
              prompt: Context | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample (B,) velocity MSE of `task`, averaged over the streams that task noises.

    `t` (B,) is the flow time of the noised streams (shared by both in joint generation, as at
    sampling time); a clean stream gets t = 0. `generator` makes the noise reproducible (eval).
    """
    if task not in NOISED:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if task != "rgb" and mod is None:
        raise ValueError(f"task {task!r} needs a modality stream")
    streams = {"rgb": rgb} if task == "rgb" else {"rgb": rgb, "mod": mod}
    inputs, times, targets = {}, {}, {}
    for name, x in streams.items():
        if name in NOISED[task]:
            eps = torch.randn_like(x) if generator is None else torch.randn(x.shape, generator=generator).to(x)
            tt = t.to(x).view(-1, 1, 1, 1, 1)
            inputs[name], times[name], targets[name] = (1 - tt) * x + tt * eps, t, eps - x
        else:
            inputs[name], times[name] = x, torch.zeros_like(t)
    v_rgb, v_mod = model(inputs["rgb"], times["rgb"], caption, inputs.get("mod"), times.get("mod"),
                         modality if task != "rgb" else None, prompt if task != "rgb" else None)
    predicted = {"rgb": v_rgb, "mod": v_mod}
    losses = [(predicted[n].float() - targets[n].float()).pow(2).flatten(1).mean(1) for n in NOISED[task]]
    return torch.stack(losses).mean(0)


@torch.no_grad()
def generate(model: UnityDiT, task: str, shape: tuple[int, ...], caption: Context,
             rgb: torch.Tensor | None = None, mod: torch.Tensor | None = None,
             modality: torch.Tensor | None = None, prompt: Context | None = None, steps: int = 25,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Euler-integrate the noised streams of `task` from noise to data; given streams stay fixed.

    cond: `mod` given -> RGB; est: `rgb` given -> modality; joint / rgb: from the caption only.
    `shape` is the latent shape (B, C, T, H, W) of one stream.
    """
    if task not in NOISED:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    noised = NOISED[task]
    device = next(model.parameters()).device
    x = {"rgb": rgb} if task == "rgb" else {"rgb": rgb, "mod": mod}
    for name in noised:
        x[name] = torch.randn(shape, generator=generator).to(device)
    missing = [name for name, value in x.items() if value is None]
    if missing:
        raise ValueError(f"task {task!r} needs the {missing[0]} stream as input")
    with_mod = "mod" in x
    times = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for t, t_next in zip(times[:-1], times[1:]):
        t_of = {name: torch.full((shape[0],), t if name in noised else 0.0, device=device) for name in x}
        velocities = model(x["rgb"], t_of["rgb"], caption, x.get("mod"), t_of.get("mod"),
                           modality if with_mod else None, prompt if with_mod else None)
        for name, v in zip(("rgb", "mod"), velocities):
            if name in noised:
                x[name] = x[name] + (t_next - t) * v.float()
    return x["rgb"], x.get("mod")
