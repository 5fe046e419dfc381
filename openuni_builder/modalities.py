"""One record per modality: everything the builder, the card and the trainer need to know about it.

A modality's name is its config key and its shard members (`KEY.<name>.mp4` / `.npz`). The record
says which annotator makes it, which Pixelplanes codec and video storage turn its raw arrays into an
RGB video, which dtypes its raw sidecar keeps, how the dataset card describes it, and what the
trainer and the UnityVideo export call it. Every other module reads this table, so adding a
modality is one annotator module plus one `register(Modality(...))` (docs/ARCHITECTURE.md, "Add a
modality").

Out-of-tree modalities live in modules named by `OPENUNI_PLUGINS` ("package.module,other.module"),
imported the first time the table is read, on the driver and on every Ray worker alike (set the
variable where the workers start, e.g. `env_vars` in runtime_env.yaml). Annotators and codecs are
named as "module:attribute" and imported only when asked for, so reading the table never imports
torch or a model library.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annotators.base import Annotator
    from openuni_builder.pixelplanes.base import Codec

PLUGINS_ENV = "OPENUNI_PLUGINS"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Modality:
    """What one modality is, from annotator to trainer.

    `codec`/`storage` are None for annotators that only add JSON (captions): such a modality has
    no video and no sidecar. `raw` maps each raw array key to the dtype its sidecar stores it in
    (docs/PIXELPLANES.md, "Raw sidecars"); `fixed_point` maps keys stored as round(value * scale)
    int16; `raw_format` is "ffv1" for image-like arrays (a lossless 16-bit video, 0.27x the npz on
    real flow) and "npz" for the others (keypoints). `trainer_index` is the modality's slot in the trainer's switcher embedding (1 + index;
    0 is RGB): fixed per modality, so a checkpoint keeps its meaning when modalities are added.
    """

    name: str
    annotator: str  # "module:Class" of its Annotator
    description: str  # what the raw arrays hold, for the card
    codec: str | None = None  # "module:Class" of its Pixelplanes codec
    storage: str | None = None  # default storage of its Pixelplanes video (pixelplanes.storage.STORAGES)
    raw: dict[str, str] = field(default_factory=dict)  # raw key -> sidecar dtype
    fixed_point: dict[str, int] = field(default_factory=dict)  # raw key -> fixed-point scale
    raw_format: str = "ffv1"  # its exact sidecar's format in the default profile (storage.RAW_FORMATS)
    hf_task: str | None = None  # Hugging Face task category for the card
    prompt: str | None = None  # the trainer's modality-type prompt
    trainer_index: int | None = None  # slot in the trainer's switcher; None: not trainable
    export_name: str | None = None  # UnityVideo's name for it (its CSV and column)
    human: bool = False  # made only where people are (the `person` filter's evidence)

    @property
    def video(self) -> bool:
        """True when it has a Pixelplanes video and a raw sidecar in the shards."""
        return self.codec is not None

    def annotator_class(self) -> type["Annotator"]:
        return pkgutil.resolve_name(self.annotator)

    def codec_instance(self) -> "Codec":
        if self.codec is None:
            raise KeyError(f"modality {self.name!r} has no Pixelplanes codec (it adds JSON only)")
        return _codec(self.codec)

    def default_models(self) -> tuple[str, ...]:
        """The registered models its annotator loads with default options."""
        return self.annotator_class()().models()

    def licences(self) -> dict[str, str]:
        """Registered model -> licence, for the models its annotator loads with default options."""
        from openuni_builder.models import load_registry

        registry = load_registry()
        return {name: registry[name].license for name in self.default_models()}


_PROMPTS = {  # UnityVideo-style modality prompts: the conventions each video encodes
    "depth": "depth map: relative depth of the scene, brighter pixels are nearer to the camera",
    "flow": "optical flow: colour-coded motion of every pixel between consecutive frames",
    "densepose": "densepose: dense body surface coordinates of every person, coloured by body part",
    "skeleton": "skeleton: human pose keypoints and limbs drawn as coloured lines",
    "seg": "segmentation: every entity as a flat coloured mask that stays stable over time",
}

_BUILTIN = (
    Modality("depth", "annotators.depth:DepthAnnotator", "relative disparity (inverse depth, larger = nearer)",
             codec="openuni_builder.pixelplanes.depth:DepthCodec", storage="x264rgb_lossless",
             raw={"disparity": "float16"}, hf_task="depth-estimation", prompt=_PROMPTS["depth"],
             trainer_index=0, export_name="depth"),
    # Flow takes the fast preset: on the 7 bundled sample clips it encodes in 1/3 of medium's CPU
    # (0.69 vs 2.15 s) for 4.7% more video bytes, which are small next to the flow sidecar, and the
    # encode is a flow build's CPU bottleneck (docs/BENCHMARKS.md). Depth, whose video is as large
    # as its sidecar, keeps medium.
    # Raw flow in KITTI's fixed point, 1/64 px steps (error <= 1/128 px, far below any estimator's)
    # within +-512 px: 2.3x smaller compressed than float16 on real flow, whose noisy mantissas
    # barely compress.
    Modality("flow", "annotators.flow:FlowAnnotator", "forward optical flow t -> t+1 in pixels",
             codec="openuni_builder.pixelplanes.flow:FlowCodec", storage="x264rgb_lossless_fast",
             raw={"flow": "int16"}, fixed_point={"flow": 64}, prompt=_PROMPTS["flow"], trainer_index=1,
             export_name="raft"),
    Modality("densepose", "annotators.densepose:DensePoseAnnotator", "DensePose IUV (part index 0..24, U, V)",
             codec="openuni_builder.pixelplanes.densepose:DensePoseCodec", storage="x264rgb_lossless",
             raw={"iuv": "uint8"}, hf_task="keypoint-detection", prompt=_PROMPTS["densepose"], trainer_index=2,
             export_name="densepose", human=True),
    Modality("skeleton", "annotators.skeleton:SkeletonAnnotator",
             "OpenPose-18 keypoints per tracked person (x, y, score)",
             codec="openuni_builder.pixelplanes.skeleton:SkeletonCodec", storage="x264rgb_lossless",
             raw={"keypoints": "float32"}, raw_format="npz", hf_task="keypoint-detection", prompt=_PROMPTS["skeleton"],
             trainer_index=3, export_name="skeleton", human=True),
    Modality("seg", "annotators.entity_seg:EntitySegAnnotator", "entity ids stable over the clip (0 = background)",
             codec="openuni_builder.pixelplanes.seg:SegCodec", storage="x264rgb_lossless",
             raw={"ids": "uint16"}, hf_task="image-segmentation", prompt=_PROMPTS["seg"], trainer_index=4,
             export_name="segmentation"),
    Modality("caption", "annotators.caption:CaptionAnnotator", "a caption generated by a video-language model"),
)

_TABLE: dict[str, Modality] = {}
_plugins_loaded = False


def register(modality: Modality) -> Modality:
    """Add (or replace) a modality; returns it, so a plugin module can keep a handle on it."""
    _TABLE[modality.name] = modality
    return modality


def _load_plugins() -> None:
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
            try:
                importlib.import_module(module)
            except ImportError as exc:  # a wrong entry must not stop builds that do not use it
                log.warning("%s names %s, which cannot be imported (%s): its modalities are unknown here",
                            PLUGINS_ENV, module, exc)


def modalities() -> dict[str, Modality]:
    """Every registered modality by name: the built-ins, then plugins (`OPENUNI_PLUGINS`)."""
    _load_plugins()
    return dict(_TABLE)


def get(name: str) -> Modality:
    """The record of modality `name`; a KeyError lists the known ones."""
    table = modalities()
    if name not in table:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def video_modalities() -> tuple[Modality, ...]:
    """Modalities with a Pixelplanes video, in registration order."""
    return tuple(m for m in modalities().values() if m.video)


def trainable() -> tuple[Modality, ...]:
    """Modalities the trainer knows, ordered by their switcher slot."""
    return tuple(sorted((m for m in modalities().values() if m.trainer_index is not None),
                        key=lambda m: m.trainer_index))


_CODECS: dict[str, Any] = {}


def _codec(path: str) -> "Codec":
    if path not in _CODECS:  # codecs are stateless; one instance per process
        _CODECS[path] = pkgutil.resolve_name(path)()
    return _CODECS[path]


for _m in _BUILTIN:
    register(_m)
