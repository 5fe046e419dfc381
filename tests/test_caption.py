"""Captions through the real Qwen2.5-VL and SmolVLM classes, loaded by AutoProcessor/AutoModel from a temp cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from annotators import get_annotator
from openuni_builder import modalities
from annotators.caption import CaptionAnnotator, sample_indices
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.models import ModelUnavailable
from openuni_builder.random_models import write_random_model
from tests.tiny_segcap import two_squares_clip

MODEL = "qwen2.5-vl-7b"
HUB_IDS = {"qwen2.5-vl-7b": "Qwen/Qwen2.5-VL-7B-Instruct", "smolvlm2-256m": "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name in HUB_IDS:
        write_random_model(name, cache=root)
    return root


def _clip(num_frames: int, index: int) -> Clip:
    frames, _ = two_squares_clip(num_frames=num_frames, size=64)
    return Clip(request=ClipRequest(source="t", video_id="v", path="x.mp4", clip_index=index),
                spec=ClipSpec(num_frames, 8.0, 64, 64), frames=frames)


@pytest.mark.parametrize("model", sorted(HUB_IDS))
def test_tiny_vlm_captions_a_batch_and_records_settings(cache, monkeypatch, model):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(cache))
    torch.set_num_threads(1)
    annotator = get_annotator("caption")(model=model, prompt="describe this video in detail", num_frames=4,
                                         max_new_tokens=4, device="cpu")
    assert not modalities.get("caption").video and annotator.unavailable() is None
    annotator.load()
    outputs = annotator.annotate([_clip(9, 0), _clip(5, 1)])
    assert len(outputs) == 2
    for out in outputs:
        assert out.raw == {}
        # Random weights: the text is garbage (and may decode to special tokens only), but real tokens came out.
        assert isinstance(out.meta["caption_generated"], str) and 1 <= out.meta["caption_tokens"] <= 4
        assert out.meta["generation"] == {"model": model, "prompt": "describe this video in detail",
                                          "num_frames": 4, "max_new_tokens": 4, "do_sample": False}
    # Greedy decoding: the same clip gets the same caption again.
    again = annotator.annotate([_clip(9, 0)])[0].meta["caption_generated"]
    assert again == outputs[0].meta["caption_generated"]
    assert annotator.provenance()["hub_id"] == HUB_IDS[model]


def test_sample_indices_spread_over_the_clip():
    assert sample_indices(49, 8) == [0, 7, 14, 21, 27, 34, 41, 48]
    assert sample_indices(3, 8) == [0, 1, 2]
    with pytest.raises(ValueError):
        sample_indices(0, 8)


def test_bad_options_and_missing_model(tmp_path, monkeypatch):
    with pytest.raises(ValueError):
        CaptionAnnotator(num_frames=0)
    with pytest.raises(ValueError):
        CaptionAnnotator(prompt="  ")
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    message = CaptionAnnotator(model="smolvlm2-256m").unavailable()
    assert "openuni-models pull smolvlm2-256m" in message
    with pytest.raises(ModelUnavailable):
        CaptionAnnotator(model=MODEL).load()


def test_frames_must_be_decoded(cache, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(cache))
    annotator = CaptionAnnotator(model=MODEL, num_frames=2, max_new_tokens=2, device="cpu")
    annotator.load()
    with pytest.raises(ValueError, match="decoded"):
        annotator.generate([np.zeros((4, 64, 64), np.uint8)], [8.0])
