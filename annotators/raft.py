"""The RAFT backend of the flow annotator (torchvision), in its own module so the DIS backend
never imports torch."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import get_model, get_weight

from openuni_builder.models import load_registry, model_file

RAFT_MIN_SIDE = 128  # RAFT's correlation pyramid needs feature maps >= 16 px at 1/8 resolution


class RaftFlow:
    """torchvision RAFT built with `weights=None` and loaded from the cached state-dict file.

    Inputs go through the weights' own documented transforms (uint8 -> [-1, 1]); frames are
    replicate-padded on the right and bottom to a multiple of 8 (and at least RAFT_MIN_SIDE) and
    the flow is cropped back. Frame pairs run in batches of `frame_batch`.
    """

    def __init__(self, model: str, device: torch.device, num_flow_updates: int, frame_batch: int) -> None:
        entry = load_registry()[model]
        self.device, self.num_flow_updates, self.frame_batch = device, num_flow_updates, frame_batch
        self.net = get_model(entry.hub_id.split("/")[-1], weights=None)  # raft_small / raft_large
        self.net.load_state_dict(torch.load(model_file(model), map_location="cpu", weights_only=True))
        self.net.to(device).eval()
        self.transforms = get_weight(entry.revision).transforms()

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).to(self.device)
        height, width = video.shape[-2:]
        pad = (0, _padded(width) - width, 0, _padded(height) - height)
        flows, pairs = [], len(video) - 1
        for start in range(0, pairs, self.frame_batch):
            stop = min(start + self.frame_batch, pairs)
            first, second = self.transforms(video[start:stop], video[start + 1:stop + 1])
            first, second = F.pad(first, pad, mode="replicate"), F.pad(second, pad, mode="replicate")
            flow = self.net(first, second, num_flow_updates=self.num_flow_updates)[-1]
            flows.append(flow[:, :, :height, :width].permute(0, 2, 3, 1))
        return torch.cat(flows).float().cpu().numpy()


def _padded(size: int) -> int:
    return max(RAFT_MIN_SIDE, -(-size // 8) * 8)
