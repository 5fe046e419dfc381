"""Floor bench: `openuni-build` against the least work that produces the same RGB clips.

(a) floor: with plain PyAV + OpenCV, decode each sample clip from the keyframe before its window
    up to its last kept frame, convert and resize only the frames the pipeline keeps (the exact
    source frames `video_io.cut_clip` picks, found in an untimed pass), and encode them to mp4
    with the RGB clip's settings; the clips are spread over --num-cpus worker processes.
(b) build: `openuni-build --source manifest` on the same clips with the default pipeline (RGB +
    DIS flow + Pixelplanes video + raw sidecar + shards), as its own process on --num-cpus CPUs.
Also measured in the same run: the fixed cost of one build process (interpreter, imports, Ray
start, actor pools, shutdown: a build of one 9-frame 32x32 clip), and, in this process and
serially, the work of each stage of (b) per clip, so (b)/(a) can be read as work + overhead.

Prints `bench floor_* key=value ...` lines; the ratio line is `bench floor_ratio ...`.

    PYTHONPATH=$PWD python bench/floor.py [--num-cpus 2] [--synthetic 4] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (SampleClip, default_spec, emit, emit_machine, pipeline_yaml, run_build,  # noqa: E402
                           sample_clips, startup_cost, write_manifest)
from openuni_builder.clip import ClipSpec  # noqa: E402
from openuni_builder.video_io import cut_clip, encode_mp4, resize_crop  # noqa: E402

TARGET = 1.3


def kept_times(clip: SampleClip, spec: ClipSpec) -> list[float]:
    """Source timestamps of the frames the pipeline keeps, in output order (repeats included)."""
    _, info = cut_clip(clip.path, spec, clip.start, clip.end)
    return info["frame_times"]


def floor_clip(path: str, times: list[float], spec: ClipSpec, out: str) -> int:
    """Decode up to the last kept frame, resize the kept ones, encode them; returns bytes written."""
    wanted = Counter(round(t, 6) for t in times)
    frames = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        seek_to = max(0.0, times[0] - 1.0) + origin
        if seek_to > origin:
            container.seek(int(seek_to / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            repeats = wanted.pop(round(float(frame.pts * stream.time_base) - origin, 6), 0)
            if repeats:
                rgb = resize_crop(frame.to_ndarray(format="rgb24"), spec)
                frames += [rgb] * repeats
            if not wanted:
                break
    if wanted:
        raise RuntimeError(f"{path}: floor decode missed frames at {sorted(wanted)}")
    data = encode_mp4(np.stack(frames), spec.fps)
    Path(out).write_bytes(data)
    return len(data)


def run_floor(plan: list[tuple[SampleClip, list[float]]], spec: ClipSpec, out: Path, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of (a): every clip through `floor_clip` on `workers` processes pinned
    to `workers` cores (as the build is)."""
    out.mkdir(parents=True, exist_ok=True)
    cores = set(sorted(os.sched_getaffinity(0))[:workers])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=os.sched_setaffinity, initargs=(0, cores)) as pool:
        jobs = [pool.submit(floor_clip, c.path, times, spec, str(out / f"{c.id}.mp4")) for c, times in plan]
        for job in jobs:
            job.result()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the pool's workers, reaped at shutdown
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stage_work(clips: list[SampleClip], spec: ClipSpec) -> dict[str, float]:
    """Serial CPU seconds, summed over clips, of each piece of work a build does per clip."""
    from annotators.flow import FlowAnnotator
    from openuni_builder import pixelplanes
    from openuni_builder.clip import Clip, ClipRequest

    flow = FlowAnnotator(backend="dis")
    flow.load()
    totals: Counter[str] = Counter()

    def timed(name, fn, *args, **kwargs):
        start = time.process_time()
        result = fn(*args, **kwargs)
        totals[name] += time.process_time() - start
        return result

    for c in clips:
        frames, _ = timed("decode_resize", cut_clip, c.path, spec, c.start, c.end)
        clip = Clip(ClipRequest("bench", c.id, c.path), spec, frames=frames)
        raw = timed("flow_dis", flow.annotate, [clip])[0].raw
        timed("encode_rgb", encode_mp4, frames, spec.fps)
        planes, _ = timed("pixelplanes_flow", pixelplanes.encode, "flow", raw, spec.num_frames)
        timed("encode_flow_video", encode_mp4, planes, spec.fps, pixelplanes.storage("flow"))
        timed("raw_sidecar_npz", pixelplanes.save_raw, raw)
    return dict(totals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs for the build and floor workers (default 2)")
    parser.add_argument("--synthetic", type=int, default=4, help="synthetic clips beside the 3 real videos (default 4)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure (a) and (b) this many times, interleaved; the minimum of each counts (default 1)")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--no-stages", action="store_true", help="skip the serial per-stage work breakdown")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="openuni-floor-"))
    try:
        emit_machine()
        spec = default_spec()
        clips = sample_clips(work / "clips", spec, args.synthetic)
        manifest = write_manifest(clips, work / "clips" / "manifest.csv")
        config = pipeline_yaml(work / "clips", spec)
        plan = [(c, kept_times(c, spec)) for c in clips]
        frames = sum(len(t) for _, t in plan)
        floors, builds, startups = [], [], []
        for k in range(args.repeat):
            floors.append(run_floor(plan, spec, work / f"floor_{k}", args.num_cpus))
            builds.append(run_build(manifest, work / f"build_{k}", config, args.num_cpus))
            startups.append(startup_cost(work / f"startup_{k}", args.num_cpus))
        (a, a_cpu) = min(floors)
        b = min(builds, key=lambda r: r.wall_s)
        s = min(startups, key=lambda r: r.wall_s)
        common = dict(clips=len(clips), frames=frames, spec=f"{spec.num_frames}x{spec.height}x{spec.width}@{spec.fps:g}",
                      num_cpus=args.num_cpus)
        emit("floor_a", wall_s=a, cpu_s=a_cpu, runs="/".join(f"{w:.2f}" for w, _ in floors), **common)
        emit("floor_b", wall_s=b.wall_s, cpu_s=b.cpu_s, peak_pss_mb=b.peak_pss_mb,
             runs="/".join(f"{r.wall_s:.2f}" for r in builds), **common)
        emit("floor_startup", wall_s=s.wall_s, cpu_s=s.cpu_s, runs="/".join(f"{r.wall_s:.2f}" for r in startups),
             num_cpus=args.num_cpus)
        steady = max(b.wall_s - s.wall_s, 0.0) / a
        emit("floor_ratio", b_over_a=b.wall_s / a, b_minus_startup_over_a=steady,
             cpu_b_over_a=b.cpu_s / a_cpu, cpu_b_minus_startup_over_a=max(b.cpu_s - s.cpu_s, 0.0) / a_cpu,
             target=TARGET, met=steady <= TARGET)
        if not args.no_stages:
            work_s = stage_work(clips, spec)
            floor_cpu = work_s["decode_resize"] + work_s["encode_rgb"]
            for name, seconds in work_s.items():
                emit("floor_stage", stage=name, cpu_s=seconds, per_clip_ms=1000 * seconds / len(clips),
                     over_floor_work=seconds / floor_cpu)
            emit("floor_work", build_cpu_s=sum(work_s.values()), floor_cpu_s=floor_cpu,
                 ratio=sum(work_s.values()) / floor_cpu)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
