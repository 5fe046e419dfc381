"""Tiny random-weight Mask2Former, SAM2-video, Qwen2.5-VL and SmolVLM models saved like the real ones, plus
a two-squares clip with exact entity ids: what the seg and caption tests load through the real code.

The configs are the smallest the real classes accept (see shared/README.md for SAM2's limits:
memory_encoder_output_channels stays 64, hidden sizes are multiples of it, every stage changes
width so query pooling pools the residual too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SAM2_SIZE = 128  # input side of the tiny SAM2: 4 Hiera stages of stride 4, 8, 16, 32


def save_tiny_mask2former(path: Path, labels: tuple[str, ...] = ("thing", "stuff")) -> None:
    """Mask2Former on a tiny Swin; the no-object logit is pushed down so queries yield segments."""
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation,
                              Mask2FormerImageProcessor, SwinConfig)

    torch.manual_seed(0)
    swin = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64,
        encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=64, num_queries=8,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    model = Mask2FormerForUniversalSegmentation(config)
    with torch.no_grad():
        model.class_predictor.bias[-1] = -10.0
    model.save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(path)


def save_tiny_sam2_video(path: Path) -> None:
    """Sam2VideoModel + Sam2VideoProcessor at 128 px with one block per Hiera stage (two in stage 3)."""
    from transformers import (Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor,
                              Sam2VideoVideoProcessor)

    torch.manual_seed(0)
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
    Sam2VideoModel(config).save_pretrained(path)
    processor = Sam2VideoProcessor(
        Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4}),
        Sam2VideoVideoProcessor(size={"height": s, "width": s}))
    processor.save_pretrained(path)


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


def save_tiny_qwen25_vl(path: Path) -> None:
    """Qwen2.5-VL with a local word-level tokenizer and its real image/video processors."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    torch.manual_seed(0)
    tokenizer, vocab = word_tokenizer(QWEN_SPECIALS, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    pixels = 56 * 56  # one 2x2 grid of merged 28 px patches per frame pair
    Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
                        video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
                        tokenizer=tokenizer, chat_template=QWEN_TEMPLATE).save_pretrained(path)
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
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)


def save_tiny_smolvlm(path: Path) -> None:
    """SmolVLM (SmolVLM2's classes) at 32 px frames, 4 image tokens per frame, local tokenizer."""
    from transformers import (SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessor,
                              SmolVLMProcessor, SmolVLMVideoProcessor)

    torch.manual_seed(0)
    tokenizer, vocab = word_tokenizer(SMOLVLM_SPECIALS, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                                      pad_token="<|endoftext|>")
    side = {"longest_edge": 32}
    SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=side, max_image_size=side, do_image_splitting=False),
        video_processor=SmolVLMVideoProcessor(size=side, max_image_size=side),
        tokenizer=tokenizer, image_seq_len=4).save_pretrained(path)  # (32 / 8)^2 patches / scale_factor^2
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(model_type="llama", vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         bos_token_id=vocab["<|im_start|>"], eos_token_id=vocab["<end_of_utterance>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        image_token_id=vocab["<image>"], scale_factor=2, pad_token_id=vocab["<|endoftext|>"])
    SmolVLMForConditionalGeneration(config).save_pretrained(path)


def two_squares_clip(num_frames: int = 5, size: int = 64, ids: tuple[int, int] = (3, 7)
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a red square moving right and a blue one moving down.

    Returns frames uint8 (T, size, size, 3) and the exact entity id map uint16 (T, size, size).
    """
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (size, size, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    truth = np.zeros((num_frames, size, size), np.uint16)
    side = size // 4
    for t in range(num_frames):
        for entity_id, (y, x), colour in ((ids[0], (size // 8, size // 8 + 2 * t), (220, 30, 30)),
                                          (ids[1], (size // 2 + 2 * t, size // 2), (30, 30, 220))):
            frames[t, y:y + side, x:x + side] = colour
            truth[t, y:y + side, x:x + side] = entity_id
    return frames, truth
