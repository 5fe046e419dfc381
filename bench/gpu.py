"""GPU bench: every GPU annotator at full size, then the whole stack on one GPU.

1. Standalone: each annotator (depth: Depth Anything V2 Large; flow: RAFT large; seg: Mask2Former
   Swin-T + SAM2.1 Hiera-L; skeleton: RT-DETR R50 + ViTPose-B; densepose: RT-DETR R50 + DensePose
   R50-FPN; caption only when --cache holds its model) is loaded through its real loading code and
   run on --clips synthetic clips at the default clip spec: frames/s and peak GPU memory.
2. Stack: `openuni-build` with all of them on one GPU (each actor pool a 1/k GPU share) on the
   same clips. Pipeline time = build wall - the fixed cost of a build process with the same
   pipeline (a 1-clip 9x32x32 build: Ray start plus every model load), compared with the sum
   of the standalone annotate times (target <= 1.15), and the GPU busy fraction from nvidia-smi
   samples between the first and last busy sample (target >= 85 %).

Weights: unless --cache points at a model cache holding the real checkpoints, each model is
written into a temporary cache under its registered name with random weights and the published
architecture sizes (configs built in code, no hub): dense compute times the same with any weights.
Where work depends on what a model finds, the random models are biased to the annotators' caps:
every RT-DETR query scores "person" (so each frame has `max_people` = 8 people to pose and
DensePose) and every Mask2Former query scores one class with confidence (so its random masks
become segments, up to `max_segments` entities, for SAM2 to track): a heavy case, not a typical one.

Without a CUDA device it prints `bench gpu skipped=no_cuda_device` and exits 0.
Prints `bench gpu_annotator ...` per annotator, `bench gpu_stack ...` and `bench gpu_ratio ...`.

    PYTHONPATH=$PWD python bench/gpu.py [--clips 8] [--annotators depth flow seg skeleton densepose] [--cache DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the DensePose checkpoint writer lives with the test helpers

from annotators import get_annotator  # noqa: E402
from bench.harness import (default_spec, emit, emit_machine, pipeline_yaml, run_build,  # noqa: E402
                           sample_clips, write_manifest)
from openuni_builder.clip import Clip, ClipRequest, ClipSpec  # noqa: E402
from openuni_builder.models import load_registry  # noqa: E402
from openuni_builder.synthetic import render  # noqa: E402

COCO_PERSON = 0
RATIO_TARGET, BUSY_TARGET = 1.15, 0.85

# Annotator -> options for the full-size ("full" profile) models. Caption runs only from a real cache.
ANNOTATORS: dict[str, dict[str, Any]] = {
    "depth": {"model": "depth-anything-v2-large", "device": "cuda"},
    "flow": {"backend": "raft", "model": "raft-large", "device": "cuda"},
    "seg": {"segmenter": "mask2former-swin-t-coco-panoptic", "tracker": "sam2.1-hiera-large", "device": "cuda"},
    "skeleton": {"model": "vitpose-base", "detector": "rtdetr-r50", "device": "cuda"},
    "densepose": {"model": "densepose-r50-fpn", "detector": "rtdetr-r50", "device": "cuda"},
    "caption": {"model": "qwen2.5-vl-7b", "device": "cuda"},
}
MODELS = {"depth": ["depth-anything-v2-large"], "flow": ["raft-large"],
          "seg": ["mask2former-swin-t-coco-panoptic", "sam2.1-hiera-large"],
          "skeleton": ["rtdetr-r50", "vitpose-base"], "densepose": ["rtdetr-r50", "densepose-r50-fpn"],
          "caption": ["qwen2.5-vl-7b"]}


# --- full-size random-weight checkpoints (published sizes, built in code) -----------------------

def _depth_anything_large(folder: Path) -> None:
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


def _raft_large(folder: Path) -> None:
    from openuni_builder.tiny_models import write_tiny_model  # torchvision's RAFT at its real size

    write_tiny_model("raft-large")


def _mask2former_swin_t(folder: Path) -> None:
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


def _sam21_hiera_large(folder: Path) -> None:
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


def _rtdetr_r50(folder: Path) -> None:
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


def _vitpose_base(folder: Path) -> None:
    """ViTPose-B: ViT-B/16 (768 wide, 12 layers, 12 heads) on 256x192 crops, simple decoder, 17 COCO keypoints."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation, VitPoseImageProcessor

    backbone = VitPoseBackboneConfig(image_size=[256, 192], patch_size=[16, 16], hidden_size=768,
                                     num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                     out_indices=[12])
    VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, use_simple_decoder=True,
                                           num_labels=17)).save_pretrained(folder)
    VitPoseImageProcessor(size={"height": 256, "width": 192}).save_pretrained(folder)


def _densepose_r50_fpn(folder: Path) -> None:
    """densepose_rcnn_R_50_FPN_s1x: ResNet-50 (3-4-6-3), FPN 256, 8 head convs of 512."""
    import pickle

    from openuni_builder.tiny_models import detectron2_densepose_state

    (filename,) = load_registry()["densepose-r50-fpn"].files
    state = detectron2_densepose_state(blocks=(3, 4, 6, 3), fpn=256, head_convs=8, head_dim=512, coarse=2)
    with open(folder / filename, "wb") as fh:  # the model zoo's .pkl layout, as tiny_models writes it
        pickle.dump({"model": state, "__author__": "openuni bench/gpu.py"}, fh)


WRITERS: dict[str, Callable[[Path], None]] = {
    "depth-anything-v2-large": _depth_anything_large, "raft-large": _raft_large,
    "mask2former-swin-t-coco-panoptic": _mask2former_swin_t, "sam2.1-hiera-large": _sam21_hiera_large,
    "rtdetr-r50": _rtdetr_r50, "vitpose-base": _vitpose_base, "densepose-r50-fpn": _densepose_r50_fpn,
}


def write_random_models(names: set[str], cache: Path) -> None:
    """Write each model into `cache`/<name> the way `openuni-models pull` lays it out."""
    os.environ["OPENUNI_MODEL_CACHE"] = str(cache)
    for name in sorted(names):
        if name not in WRITERS:
            raise SystemExit(f"no random full-size writer for {name}; pass --cache with the real model")
        torch.manual_seed(0)
        started = time.perf_counter()
        (cache / name).mkdir(parents=True, exist_ok=True)
        WRITERS[name](cache / name)
        print(f"wrote random-weight {name} ({load_registry()[name].hub_id} sizes) in "
              f"{time.perf_counter() - started:.1f}s", flush=True)


# --- measurements ---------------------------------------------------------------------------------

def standalone(name: str, clips: list[Clip]) -> dict[str, float]:
    """Load one annotator, warm it up on one clip, time `annotate` over all clips in its batch size."""
    cls = get_annotator(name)
    annotator = cls(**ANNOTATORS[name])
    reason = annotator.unavailable()
    if reason:
        raise RuntimeError(f"{name}: {reason}")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    annotator.load()
    load_s = time.perf_counter() - started
    annotator.annotate(clips[:1])
    torch.cuda.synchronize()
    batch = max(1, cls.default_resources.batch_size)
    started = time.perf_counter()
    for i in range(0, len(clips), batch):
        annotator.annotate(clips[i:i + batch])
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    frames = sum(len(c.frames) for c in clips)
    result = {"annotate_s": seconds, "frames_per_s": frames / seconds, "load_s": load_s,
              "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30,
              "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
    del annotator
    gc.collect()
    torch.cuda.empty_cache()
    return result


class GpuSampler:
    """nvidia-smi utilization.gpu samples (every 100 ms) with their times, in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> "GpuSampler":
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                           "-lms", "100", "-i", str(torch.cuda.current_device())],
                                          stdout=subprocess.PIPE, text=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                self.samples.append((time.perf_counter(), float(line.strip())))
            except ValueError:
                pass

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
            self._thread.join(timeout=5)

    def busy_fraction(self) -> float:
        """Mean utilisation between the first and last busy sample (model loading before the
        first kernel and the tail after the last are not the pipeline's steady state)."""
        busy = [i for i, (_, u) in enumerate(self.samples) if u > 0]
        if not busy:
            return float("nan")
        window = [u for _, u in self.samples[busy[0]:busy[-1] + 1]]
        return float(np.mean(window)) / 100


def stack_yaml(directory: Path, spec: ClipSpec, names: list[str]) -> Path:
    """The pipeline with every measured annotator on one GPU, each actor pool holding a 1/k share."""
    share = round(1.0 / len(names), 3)
    return pipeline_yaml(directory, spec, annotators={
        n: {**ANNOTATORS[n], "resources": {"num_gpus": share, "num_cpus": 1, "concurrency": 1}} for n in names})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8, help="synthetic clips per measurement (default 8)")
    parser.add_argument("--annotators", nargs="+", default=["depth", "flow", "seg", "skeleton", "densepose"],
                        choices=sorted(ANNOTATORS), help="annotators to measure (default: all but caption)")
    parser.add_argument("--cache", type=Path,
                        help="a model cache with the real checkpoints (default: random full-size ones in a temp dir)")
    parser.add_argument("--no-stack", action="store_true", help="standalone figures only")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed after)")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        emit("gpu", skipped="no_cuda_device", torch=torch.__version__, cuda_build=torch.version.cuda or "none")
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="openuni-gpu-"))
    try:
        emit_machine()
        emit("gpu_device", name=torch.cuda.get_device_name(), memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30,
             torch=torch.__version__, cuda=torch.version.cuda)
        needed = {m for a in args.annotators for m in MODELS[a]}
        if args.cache:
            os.environ["OPENUNI_MODEL_CACHE"] = str(args.cache)
        else:
            write_random_models(needed, work / "models")
        spec = default_spec()
        clips = [Clip(ClipRequest("bench", f"synthetic_{s}", "-"), spec, frames=render(spec, s).frames)
                 for s in range(args.clips)]
        times = {}
        for name in args.annotators:
            r = standalone(name, clips)
            times[name] = r["annotate_s"]
            emit("gpu_annotator", name=name, clips=len(clips), frames=len(clips) * spec.num_frames, **r,
                 weights="cache" if args.cache else "random")
        if args.no_stack:
            return
        files = sample_clips(work / "clips", spec, args.clips, real=False)
        manifest = write_manifest(files, work / "clips" / "manifest.csv")
        config = stack_yaml(work / "clips", spec, args.annotators)
        tiny = ClipSpec(num_frames=9, fps=spec.fps, height=32, width=32)
        startup_manifest = write_manifest(sample_clips(work / "startup_clip", tiny, 1, real=False),
                                          work / "startup_clip" / "manifest.csv")
        startup = run_build(startup_manifest, work / "startup_build", stack_yaml(work / "startup_clip", tiny, args.annotators))
        with GpuSampler() as sampler:
            run = run_build(manifest, work / "stack_build", config)
        pipeline_s = max(run.wall_s - startup.wall_s, 1e-9)
        total = sum(times.values())
        busy = sampler.busy_fraction()
        emit("gpu_stack", clips=len(files), wall_s=run.wall_s, startup_s=startup.wall_s, pipeline_s=pipeline_s,
             sum_standalone_s=total, gpu_busy=busy, peak_pss_mb=run.peak_pss_mb, annotators=",".join(args.annotators))
        emit("gpu_ratio", pipeline_over_sum=pipeline_s / total, target=RATIO_TARGET,
             met=pipeline_s / total <= RATIO_TARGET, gpu_busy=busy, busy_target=BUSY_TARGET,
             busy_met=busy >= BUSY_TARGET)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
