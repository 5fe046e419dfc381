"""Tiny random-weight person detector, ViTPose and DensePose checkpoints for the human-annotator
tests, written into a model cache under their registered names so the real loading code runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from transformers import (RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig,
                          VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor)


def save_tiny_rtdetr(cache: Path, num_queries: int = 3, seed: int = 0) -> Path:
    """RT-DETR with a 4-stage basic ResNet, 1 encoder/decoder layer, classes person + car."""
    torch.manual_seed(seed)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(backbone_config=backbone, d_model=16, encoder_hidden_dim=16,
                          encoder_in_channels=[16, 32, 64], decoder_in_channels=[16, 16, 16],
                          feat_strides=[8, 16, 32], encoder_layers=1, decoder_layers=1,
                          encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                          decoder_attention_heads=2, decoder_n_points=2, num_queries=num_queries,
                          num_denoising=0, num_labels=2, id2label={0: "person", 1: "car"},
                          label2id={"person": 0, "car": 1})
    path = cache / "rtdetr-r50"
    RTDetrForObjectDetection(config).save_pretrained(path)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(path)
    return path


def save_tiny_vitpose(cache: Path, seed: int = 0) -> Path:
    """ViTPose with one 32-wide transformer layer on 64x48 crops, simple decoder, 17 keypoints."""
    torch.manual_seed(seed)
    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=32,
                                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     out_indices=[1])
    path = cache / "vitpose-base"
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=True,
                                           num_labels=17)).save_pretrained(path)
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(path)
    return path


def detectron2_densepose_state(seed: int = 0, blocks=(1, 1, 1, 1), fpn: int = 16, head_convs: int = 2,
                               head_dim: int = 16, coarse: int = 2) -> dict[str, np.ndarray]:
    """A DensePose R-CNN R-FPN state dict named the way detectron2 names it.

    Written from detectron2's module layout, independently of the code under test: ResNet
    `backbone.bottom_up.{stem,resN.i}.{convK,shortcut}[.norm]` (FrozenBN: weight, bias,
    running_mean, running_var), FPN `backbone.fpn_{lateral,output}N`, the DensePose ROI heads
    `roi_heads.densepose_head.body_conv_fcnN` and `roi_heads.densepose_predictor.*_lowres`, plus
    RPN / box-head keys a DensePose model zoo file also holds.
    """
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def put(name: str, *shape: int, positive: bool = False) -> None:
        value = rng.standard_normal(shape).astype(np.float32) * 0.05
        state[name] = np.abs(value) + 0.5 if positive else value

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        put(f"{name}.weight", cout, cin, k, k)
        for p in ("weight", "bias", "running_mean"):
            put(f"{name}.norm.{p}", cout)
        put(f"{name}.norm.running_var", cout, positive=True)

    conv("backbone.bottom_up.stem.conv1", 64, 3, 7)
    cin = 64
    for stage, n in zip(range(2, 6), blocks):
        width = 64 * 2 ** (stage - 2)
        for i in range(n):
            pre = f"backbone.bottom_up.res{stage}.{i}"
            if i == 0:
                conv(f"{pre}.shortcut", 4 * width, cin, 1)
            conv(f"{pre}.conv1", width, cin, 1)
            conv(f"{pre}.conv2", width, width, 3)
            conv(f"{pre}.conv3", 4 * width, width, 1)
            cin = 4 * width
        put(f"backbone.fpn_lateral{stage}.weight", fpn, cin, 1, 1)
        put(f"backbone.fpn_lateral{stage}.bias", fpn)
        put(f"backbone.fpn_output{stage}.weight", fpn, fpn, 3, 3)
        put(f"backbone.fpn_output{stage}.bias", fpn)
    for i in range(1, head_convs + 1):
        put(f"roi_heads.densepose_head.body_conv_fcn{i}.weight", head_dim, fpn if i == 1 else head_dim, 3, 3)
        put(f"roi_heads.densepose_head.body_conv_fcn{i}.bias", head_dim)
    for name, out in (("ann_index", coarse), ("index_uv", 25), ("u", 25), ("v", 25)):
        put(f"roi_heads.densepose_predictor.{name}_lowres.weight", head_dim, out, 4, 4)  # ConvTranspose: (in, out, k, k)
        put(f"roi_heads.densepose_predictor.{name}_lowres.bias", out)
    put("proposal_generator.rpn_head.conv.weight", fpn, fpn, 3, 3)
    put("proposal_generator.rpn_head.objectness_logits.weight", 3, fpn, 1, 1)
    put("roi_heads.box_head.fc1.weight", 8, fpn * 49)
    put("roi_heads.box_predictor.cls_score.weight", 2, 8)
    return state


def save_tiny_densepose(cache: Path, state: dict[str, np.ndarray] | None = None) -> Path:
    """Write a detectron2 model-zoo style .pkl ({"model": numpy arrays, "__author__": ...})."""
    path = cache / "densepose-r50-fpn" / "model_final_162be9.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump({"model": state or detectron2_densepose_state(), "__author__": "tests"}, fh)
    return path


def person_clip(frames: int = 5, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A small moving-blob clip (uint8 RGB); content only has to be deterministic."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(frames)])
