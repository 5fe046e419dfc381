"""Tiny random-weight stand-ins for registered models, written where the real ones would be cached.

They use the same classes and the same file layout that `openuni-models pull` produces, so tests
and dry runs exercise the exact loading and inference code of a real build, only with untrained
weights and small sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from openuni_builder.models import ModelEntry, cache_dir, load_registry


def write_tiny_model(name: str, seed: int = 0) -> Path:
    """Write a random-weight `name` into cache_dir()/name; returns that folder."""
    entry = load_registry()[name]
    folder = cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if entry.kind == "torchvision":
        _torchvision_state_dict(entry, folder)
    elif entry.hub_id.startswith("depth-anything/"):
        _depth_anything(folder)
    else:
        raise ValueError(f"no tiny stand-in for model {name!r} ({entry.hub_id})")
    return folder


def _torchvision_state_dict(entry: ModelEntry, folder: Path) -> None:
    """The torchvision architecture itself (already small enough) with random weights."""
    from torchvision.models import get_model

    net = get_model(entry.hub_id.split("/")[-1], weights=None)
    (filename,) = entry.files
    torch.save(net.state_dict(), folder / filename)


def _depth_anything(folder: Path) -> None:
    """Depth Anything (DINOv2 backbone + DPT head), hidden size 32, 4 layers, 56 px input."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(image_size=56, patch_size=14, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=64, out_indices=[1, 2, 3, 4],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8)
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():  # non-negative last layer: the head's final ReLU then keeps (almost) every pixel
        model.head.conv3.weight.abs_()
    model.save_pretrained(folder)
    # The released processors resize keeping the aspect ratio to a multiple of the patch size.
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3).save_pretrained(folder)
