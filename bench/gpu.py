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
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from annotators import get_annotator  # noqa: E402
from bench.harness import (default_spec, emit, emit_machine, pipeline_yaml, run_build,  # noqa: E402
                           sample_clips, write_manifest)
from openuni_builder.clip import Clip, ClipRequest, ClipSpec  # noqa: E402
from openuni_builder.random_models import write_models_for  # noqa: E402
from openuni_builder.synthetic import render  # noqa: E402

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

def write_full_models(annotators: list[str], cache: Path) -> None:
    """Random full-size stand-ins of the models each annotator declares (`models()`), into `cache`."""
    for name in annotators:
        started = time.perf_counter()
        written = write_models_for(get_annotator(name)(**ANNOTATORS[name]), "full", cache)
        print(f"wrote random-weight full-size {', '.join(written) or 'nothing'} for {name} in "
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
        if args.cache:
            os.environ["OPENUNI_MODEL_CACHE"] = str(args.cache)
        else:
            write_full_models(args.annotators, work / "models")
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
