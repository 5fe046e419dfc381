"""DensePose R-CNN (R50-FPN, chart/IUV head) on torchvision parts, loading detectron2 checkpoints.

detectron2 is not on PyPI, so the network is rebuilt from torchvision's detection building blocks
and the official DensePose model-zoo weights are loaded through `detectron2_to_torchvision`:

- backbone: torchvision ResNet with FrozenBatchNorm2d + `BackboneWithFPN` (p2..p5, 256 ch). The
  MSRA-initialised detectron2 ResNets put the stride-2 of each stage's first bottleneck in the
  1x1 conv (`RESNETS.STRIDE_IN_1X1: True`), torchvision in the 3x3: `stride_in_1x1` moves it.
- pooler: `MultiScaleRoIAlign` over p2..p5, 28x28, sampling ratio 2, aligned=False; this is
  detectron2's "ROIAlign" pooler (the R_50_FPN_s1x config's POOLER_TYPE) with the same level
  rule (canonical box 224 on level 4).
- head `DensePoseV1ConvXHead`: 8 conv 3x3, 512 ch, ReLU. Predictor `DensePoseChartPredictor`:
  four ConvTranspose2d(k=4, s=2, p=1) heads (coarse segmentation `ann_index`, 24 parts +
  background `index_uv`, `u`, `v`), each then upsampled x2 bilinearly: 28 -> 56 -> 112.

No RPN or box head: person boxes come from the project's shared RT-DETR detector, so only the
parts that turn boxes into IUV are built, and those checkpoint keys are skipped.

The architecture sizes (blocks per stage, FPN width, head depth/width, coarse channels: 2 for
the s1x models, 15 for the legacy ones) are read from the checkpoint (`DensePoseArch.from_detectron2`),
so the same code loads R50/R101 and the tiny test checkpoints.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

# detectron2 defaults the model-zoo weights were trained with (BGR input, 0..255, no std).
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
SIZE_DIVISIBILITY = 32


@dataclass(frozen=True)
class DensePoseArch:
    """Sizes of a DensePose R-CNN; defaults are densepose_rcnn_R_50_FPN_s1x."""

    stage_blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    bottleneck: bool = True
    stride_in_1x1: bool = True
    fpn_channels: int = 256
    head_convs: int = 8
    head_dim: int = 512
    head_kernel: int = 3
    coarse_channels: int = 2
    num_patches: int = 24
    deconv_kernel: int = 4
    up_scale: int = 2
    pooler_resolution: int = 28
    pooler_sampling_ratio: int = 2

    @classmethod
    def from_detectron2(cls, state: dict[str, np.ndarray], **fixed) -> "DensePoseArch":
        """Sizes read from a detectron2 DensePose state dict; `fixed` sets what weights cannot
        tell (stride_in_1x1, up_scale, pooler settings)."""
        def blocks(stage: int) -> int:
            idx = {int(m[1]) for k in state if (m := re.match(rf"backbone\.bottom_up\.res{stage}\.(\d+)\.", k))}
            return max(idx) + 1 if idx else 0

        heads = sorted(int(m[1]) for k in state
                       if (m := re.fullmatch(r"roi_heads\.densepose_head\.body_conv_fcn(\d+)\.weight", k)))
        try:
            first = state[f"roi_heads.densepose_head.body_conv_fcn{heads[0]}.weight"]
            coarse = state["roi_heads.densepose_predictor.ann_index_lowres.weight"]
            fine = state["roi_heads.densepose_predictor.index_uv_lowres.weight"]
            fpn = state["backbone.fpn_output2.weight"]
        except (KeyError, IndexError) as exc:
            raise ValueError(f"not a DensePose R-CNN FPN checkpoint with a V1ConvX head (missing {exc})") from None
        return cls(stage_blocks=tuple(blocks(s) for s in range(2, 6)),
                   bottleneck="backbone.bottom_up.res2.0.conv3.weight" in state,
                   fpn_channels=fpn.shape[0], head_convs=len(heads), head_dim=first.shape[0],
                   head_kernel=first.shape[-1], coarse_channels=coarse.shape[1],
                   num_patches=fine.shape[1] - 1, deconv_kernel=coarse.shape[-1], **fixed)


class DensePoseOutput(NamedTuple):
    """Per-box predictor outputs, each (K, C, S, S) with S = 4 * pooler_resolution."""

    coarse_segm: torch.Tensor
    fine_segm: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor


class DensePoseV1ConvXHead(nn.Module):
    """Stacked conv + ReLU on the pooled box features (detectron2's DensePoseV1ConvXHead)."""

    def __init__(self, in_channels: int, dim: int, num_convs: int, kernel: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else dim, dim, kernel, padding=kernel // 2)
                                   for i in range(num_convs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return x


class DensePoseChartPredictor(nn.Module):
    """Transposed-conv heads for coarse/fine segmentation and U, V, upsampled by `up_scale`."""

    def __init__(self, in_channels: int, coarse_channels: int, patches: int, kernel: int, up_scale: int) -> None:
        super().__init__()
        deconv = lambda out: nn.ConvTranspose2d(in_channels, out, kernel, stride=2, padding=kernel // 2 - 1)  # noqa: E731
        self.ann_index_lowres = deconv(coarse_channels)
        self.index_uv_lowres = deconv(patches + 1)
        self.u_lowres = deconv(patches + 1)
        self.v_lowres = deconv(patches + 1)
        self.up_scale = up_scale

    def forward(self, x: torch.Tensor) -> DensePoseOutput:
        up = lambda t: F.interpolate(t, scale_factor=self.up_scale, mode="bilinear", align_corners=False)  # noqa: E731
        return DensePoseOutput(up(self.ann_index_lowres(x)), up(self.index_uv_lowres(x)),
                               up(self.u_lowres(x)), up(self.v_lowres(x)))


def resnet_fpn(arch: DensePoseArch) -> BackboneWithFPN:
    """torchvision ResNet (frozen BN) + FPN with detectron2's stride placement."""
    block = Bottleneck if arch.bottleneck else BasicBlock
    resnet = ResNet(block, list(arch.stage_blocks), norm_layer=FrozenBatchNorm2d)
    if arch.stride_in_1x1 and arch.bottleneck:
        for layer in (resnet.layer2, resnet.layer3, resnet.layer4):
            first = layer[0]
            first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
    widths = [64 * block.expansion * 2 ** i for i in range(4)]
    return BackboneWithFPN(resnet, {f"layer{i + 1}": str(i) for i in range(4)}, widths, arch.fpn_channels)


class DensePoseRCNN(nn.Module):
    """Backbone + ROI pooling + DensePose head/predictor for given person boxes."""

    def __init__(self, arch: DensePoseArch = DensePoseArch()) -> None:
        super().__init__()
        self.arch = arch
        self.backbone = resnet_fpn(arch)
        self.pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], arch.pooler_resolution, arch.pooler_sampling_ratio)
        self.head = DensePoseV1ConvXHead(arch.fpn_channels, arch.head_dim, arch.head_convs, arch.head_kernel)
        self.predictor = DensePoseChartPredictor(arch.head_dim, arch.coarse_channels, arch.num_patches,
                                                 arch.deconv_kernel, arch.up_scale)

    def forward(self, images: torch.Tensor, boxes: list[torch.Tensor]) -> DensePoseOutput:
        """`images` (N, 3, H, W) normalised BGR with H, W multiples of 32; `boxes` one (k, 4) xyxy
        tensor per image in its pixel coordinates. Outputs are in box order, image by image."""
        features = self.backbone(images)
        pooled = self.pooler(features, boxes, [tuple(images.shape[-2:])] * len(images))
        return self.predictor(self.head(pooled))


# detectron2 key -> our key. Each pattern is matched in full; see detectron2's ResNet ("stem",
# "res2".."res5", "shortcut", "conv1.norm"), FPN ("fpn_lateral2", "fpn_output2", ...) and the
# DensePose ROI heads ("densepose_head.body_conv_fcn1", "densepose_predictor.u_lowres", ...).
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"backbone\.bottom_up\.stem\.conv1\.weight", "backbone.body.conv1.weight"),
    (r"backbone\.bottom_up\.stem\.conv1\.norm\.(\w+)", "backbone.body.bn1.{0}"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.weight", "backbone.body.layer{0-1}.{1}.conv{2}.weight"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)", "backbone.body.layer{0-1}.{1}.bn{2}.{3}"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.weight", "backbone.body.layer{0-1}.{1}.downsample.0.weight"),
    (r"backbone\.bottom_up\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)", "backbone.body.layer{0-1}.{1}.downsample.1.{2}"),
    (r"backbone\.fpn_lateral(\d)\.(weight|bias)", "backbone.fpn.inner_blocks.{0-2}.0.{1}"),
    (r"backbone\.fpn_output(\d)\.(weight|bias)", "backbone.fpn.layer_blocks.{0-2}.0.{1}"),
    (r"roi_heads\.densepose_head\.body_conv_fcn(\d+)\.(weight|bias)", "head.convs.{0-1}.{1}"),
    (r"roi_heads\.densepose_predictor\.((?:ann_index|index_uv|u|v)_lowres)\.(weight|bias)", "predictor.{0}.{1}"),
)
# Parts of the full detectron2 model that this box-conditioned network does not have.
_SKIPPED = re.compile(r"proposal_generator\.|roi_heads\.box_head\.|roi_heads\.box_predictor\.|pixel_(mean|std)$")


def detectron2_to_torchvision(state: dict[str, np.ndarray | torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a detectron2 DensePose R-CNN state dict to `DensePoseRCNN` keys.

    A rule's `{i-k}` placeholder is capture group i as an integer minus k (res2 -> layer1, fpn
    level 2 -> block 0, body_conv_fcn1 -> convs.0), `{i}` is the group as is. Returns the renamed
    tensors and the skipped keys (RPN, box head, pixel stats); any other key raises, so a
    checkpoint of a different head (DeepLab, confidence-aware) fails loudly instead of half-loading.
    """
    renamed, skipped = {}, []
    for key, value in state.items():
        for pattern, target in _KEY_RULES:
            if m := re.fullmatch(pattern, key):
                groups = m.groups()
                new = re.sub(r"\{(\d)(?:-(\d))?\}",
                             lambda p: str(int(groups[int(p[1])]) - int(p[2])) if p[2] else groups[int(p[1])],
                             target)
                renamed[new] = torch.as_tensor(np.asarray(value))
                break
        else:
            if not _SKIPPED.match(key):
                raise ValueError(f"unrecognised detectron2 DensePose key {key!r}")
            skipped.append(key)
    return renamed, skipped


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles a model-zoo .pkl (dicts of numpy arrays) without running arbitrary code."""

    _ALLOWED = {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a weights file")
        return super().find_class(module, name)


def read_detectron2_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """The `model` state dict of a detectron2 checkpoint: model-zoo .pkl (numpy, latin1) or .pth."""
    path = Path(path)
    if path.suffix == ".pkl":
        with open(path, "rb") as fh:
            data = _NumpyUnpickler(fh, encoding="latin1").load()
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no detectron2 state dict")
    return {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in state.items()}


def load_densepose_rcnn(path: Path, stride_in_1x1: bool = True) -> DensePoseRCNN:
    """Build `DensePoseRCNN` sized by the checkpoint at `path` and load its weights (strict)."""
    state = read_detectron2_checkpoint(path)
    model = DensePoseRCNN(DensePoseArch.from_detectron2(state, stride_in_1x1=stride_in_1x1))
    renamed, _ = detectron2_to_torchvision(state)
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path.name} does not fit DensePoseRCNN: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()
