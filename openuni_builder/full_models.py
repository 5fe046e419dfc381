"""Full-size random-weight stand-ins: each registered "full" profile model at its published size,
built in code with the real classes, for measuring speed and memory on a GPU without a model hub
(bench/gpu.py). `openuni_builder.random_models` is the registry that picks these or the tiny ones.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from openuni_builder.models import ModelEntry
from openuni_builder.tiny_models import Writer, _torchvision_state_dict, detectron2_densepose_state

COCO_PERSON = 0


def _depth_anything_large(entry: ModelEntry, folder: Path, seed: int) -> None:
    """Depth Anything V2 Large: DINOv2 ViT-L/14 (1024 wide, 24 layers, 16 heads) + DPT head."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=1024, num_hidden_layers=24,
                            num_attention_heads=16, intermediate_size=4096, out_indices=[5, 12, 18, 24],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14, reassemble_hidden_size=1024,
                                 reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[256, 512, 1024, 1024],
                                 fusion_hidden_size=256, head_hidden_size=32, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      resample=3, do_normalize=True, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)


def _raft_large(entry: ModelEntry, folder: Path, seed: int) -> None:
    _torchvision_state_dict(entry, folder, seed)  # torchvision's RAFT is its real size already


def _mask2former_swin_t(entry: ModelEntry, folder: Path, seed: int) -> None:
    """Mask2Former on Swin-T (96 wide, depths 2-2-6-2), 100 queries, 9 decoder layers, COCO panoptic's 133 classes."""
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor,
                              SwinConfig)

    swin = SwinConfig(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                      window_size=7, drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"])
    labels = {i: f"class_{i}" for i in range(133)}
    config = Mask2FormerConfig(backbone_config=swin, num_queries=100, decoder_layers=10, hidden_dim=256,
                               feature_size=256, mask_feature_size=256, encoder_layers=6,
                               encoder_feedforward_dim=1024, dim_feedforward=2048, num_attention_heads=8,
                               id2label=labels, label2id={v: k for k, v in labels.items()})
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():  # every query confidently one class, never no-object: queries become segments
        model.class_predictor.bias[-1] = -10.0
        model.class_predictor.bias[0] = 10.0
    model.save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333}).save_pretrained(folder)


def _sam21_hiera_large(entry: ModelEntry, folder: Path, seed: int) -> None:
    """SAM2.1 Hiera-L: 144 wide, blocks 2-6-36-4, global attention in blocks 23/33/43, 1024 px."""
    from transformers import (Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor,
                              Sam2VideoVideoProcessor)

    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=144, num_attention_heads=2,
                    blocks_per_stage=[2, 6, 36, 4], embed_dim_per_stage=[144, 288, 576, 1152],
                    num_attention_heads_per_stage=[2, 4, 8, 16], window_size_per_stage=[8, 4, 16, 8],
                    global_attention_blocks=[23, 33, 43], window_positional_embedding_background_size=[7, 7],
                    image_size=[1024, 1024])
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone,
                  backbone_channel_list=[1152, 576, 288, 144])
    Sam2VideoModel(Sam2VideoConfig(vision_config=vision)).save_pretrained(folder)
    Sam2VideoProcessor(Sam2ImageProcessor(), Sam2VideoVideoProcessor()).save_pretrained(folder)


def _rtdetr_r50(entry: ModelEntry, folder: Path, seed: int) -> None:
    """RT-DETR R50-vd (transformers' default config is that model), 80 COCO classes, every query a person."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor

    labels = {i: ("person" if i == COCO_PERSON else f"class_{i}") for i in range(80)}
    model = RTDetrForObjectDetection(RTDetrConfig(num_labels=80, id2label=labels,
                                                  label2id={v: k for k, v in labels.items()}))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and module.out_features == 80 and (
                    "class_embed" in name or "enc_score_head" in name):
                module.bias[COCO_PERSON] = 10.0
    model.save_pretrained(folder)
    RTDetrImageProcessor(size={"height": 640, "width": 640}).save_pretrained(folder)


def _vitpose_base(entry: ModelEntry, folder: Path, seed: int) -> None:
    """ViTPose-B: ViT-B/16 (768 wide, 12 layers, 12 heads) on 256x192 crops, simple decoder, 17 COCO keypoints."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    backbone = VitPoseBackboneConfig(image_size=[256, 192], patch_size=[16, 16], hidden_size=768,
                                     num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                     out_indices=[12])
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=True,
                                           num_labels=17)).save_pretrained(folder)
    VitPoseImageProcessor(size={"height": 256, "width": 192}).save_pretrained(folder)


def _densepose_r50_fpn(entry: ModelEntry, folder: Path, seed: int) -> None:
    """densepose_rcnn_R_50_FPN_s1x: ResNet-50 (3-4-6-3), FPN 256, 8 head convs of 512."""
    (filename,) = entry.files
    state = detectron2_densepose_state(blocks=(3, 4, 6, 3), fpn=256, head_convs=8, head_dim=512, coarse=2)
    with open(folder / filename, "wb") as fh:  # the model zoo's .pkl layout, as tiny_models writes it
        pickle.dump({"model": state, "__author__": "openuni full_models"}, fh)


WRITERS: dict[str, Writer] = {
    "depth-anything-v2-large": _depth_anything_large, "raft-large": _raft_large,
    "mask2former-swin-t-coco-panoptic": _mask2former_swin_t, "sam2.1-hiera-large": _sam21_hiera_large,
    "rtdetr-r50": _rtdetr_r50, "vitpose-base": _vitpose_base, "densepose-r50-fpn": _densepose_r50_fpn,
}
