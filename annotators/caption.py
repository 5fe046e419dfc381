"""Detailed captions from a video-language model looking at frames sampled from the clip.

One code path for every registered captioner: `AutoProcessor` + `AutoModelForImageTextToText`
resolve to Qwen2.5-VL (`qwen2.5-vl-7b`, profile full) or SmolVLM2 (`smolvlm2-256m`, profile lite)
from the cached config. The already decoded frames go to the processor as one video (no file is
read again), with metadata giving the clip's fps and the sampled frame indices so models that
embed time (Qwen's temporal positions, SmolVLM's frame timestamps) see real seconds.
Greedy decoding by default, so the same clip gets the same caption on every rerun.
Meta only: `caption_generated`, `caption_tokens` (tokens generated) and the generation settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from annotators.base import Annotator, Resources
from annotators.torch_device import pick_device, pick_dtype
from openuni_builder.clip import Clip, ModalityOutput
from openuni_builder.models import load_registry, model_dir

DEFAULT_PROMPT = (
    "Describe this video in detail: the subjects and their appearance, what they do and how they "
    "move, the setting, and the camera motion.")


def sample_indices(num_frames: int, count: int) -> list[int]:
    """`count` frame indices spread evenly over the clip, first and last included."""
    if num_frames < 1 or count < 1:
        raise ValueError(f"need at least one frame and one sample, got {num_frames} frames, {count} samples")
    return np.unique(np.linspace(0, num_frames - 1, min(count, num_frames)).round().astype(int)).tolist()


@dataclass(frozen=True)
class CaptionOptions:
    """`model`: a registered video-language model; `num_frames`: frames sampled evenly from the clip;
    greedy decoding unless `do_sample`."""

    model: str = "smolvlm2-256m"
    prompt: str = DEFAULT_PROMPT
    num_frames: int = 8
    max_new_tokens: int = 256
    do_sample: bool = False
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.max_new_tokens < 1:
            raise ValueError(f"num_frames and max_new_tokens must be >= 1, got {self.num_frames}, "
                             f"{self.max_new_tokens}")
        if not self.prompt.strip():
            raise ValueError("caption prompt is empty")


class CaptionAnnotator(Annotator):
    """A generated caption per clip (`caption_generated`); the runtime chooses which caption is KEY.txt."""

    name: ClassVar[str] = "caption"
    Options: ClassVar[type] = CaptionOptions
    default_resources: ClassVar[Resources] = Resources(num_cpus=1, num_gpus=1.0, batch_size=4, concurrency=1)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._model = self._processor = None

    def models(self) -> tuple[str, ...]:
        return (self.options.model,)

    def load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        o = self.options
        path = model_dir(o.model)
        self.device = pick_device(o.device)
        dtype = pick_dtype(o.dtype, self.device)
        self._processor = AutoProcessor.from_pretrained(path)
        self._processor.tokenizer.padding_side = "left"  # batched generation continues every prompt at its end
        self._model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(self.device).eval()

    def annotate(self, clips: list[Clip]) -> list[ModalityOutput]:
        captions = self.generate([c.frames for c in clips], [c.spec.fps for c in clips])
        return [ModalityOutput(meta={"caption_generated": text, "caption_tokens": count, "generation": self.settings()})
                for text, count in captions]

    def generate(self, videos: list[np.ndarray], fps: list[float]) -> list[tuple[str, int]]:
        """Caption each (T, H, W, 3) uint8 video in one batched `generate` call.

        Returns (caption, number of tokens generated before padding) per video; the count tells a
        caption cut at `max_new_tokens` or one made only of special tokens from a normal one.
        """
        import torch  # here, not at module level: the driver builds this annotator without torch
        from transformers.video_utils import VideoMetadata

        with torch.inference_mode():
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": self.options.prompt}]}]
            text = self._processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            sampled, metadata = [], []
            for frames, rate in zip(videos, fps):
                if frames is None or frames.ndim != 4 or frames.shape[-1] != 3:
                    raise ValueError(f"caption needs decoded (T, H, W, 3) frames, got {getattr(frames, 'shape', None)}")
                idx = sample_indices(len(frames), self.options.num_frames)
                sampled.append(frames[idx])
                metadata.append(VideoMetadata(total_num_frames=len(frames), fps=rate, width=frames.shape[2],
                                              height=frames.shape[1], duration=len(frames) / rate, frames_indices=idx))
            inputs = self._processor(text=[text] * len(videos), videos=sampled, video_metadata=metadata,
                                     do_sample_frames=False, padding=True, return_tensors="pt")
            inputs = inputs.to(self.device)
            for key, value in inputs.items():
                if torch.is_floating_point(value):
                    inputs[key] = value.to(self._model.dtype)
            output = self._model.generate(**inputs, max_new_tokens=self.options.max_new_tokens,
                                          do_sample=self.options.do_sample)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            texts = self._processor.batch_decode(new_tokens, skip_special_tokens=True)
            counts = (new_tokens != self._processor.tokenizer.pad_token_id).sum(1).tolist()
            return [(text.strip(), int(count)) for text, count in zip(texts, counts)]

    def settings(self) -> dict[str, Any]:
        """The options that decide the caption text (what a rerun with other settings changes)."""
        o = self.options
        return {"model": o.model, "prompt": o.prompt, "num_frames": o.num_frames,
                "max_new_tokens": o.max_new_tokens, "do_sample": o.do_sample}

    def provenance(self) -> dict[str, Any]:
        entry = load_registry()[self.options.model]
        return {"hub_id": entry.hub_id, "revision": entry.revision, **self.settings()}
