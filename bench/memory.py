"""Peak memory of a build against clip count: one long source cut into more and more clips, and
more and more short sources. Bounded memory means the peak stays flat as the clip count grows.

Each build runs `openuni-build` (embedded Ray, the openuni pipeline's clip spec with DIS flow) in
a subprocess; the driver and every Ray process under it are sampled with psutil. RSS counts the
shared object store once per process that maps it, so the sum of PSS (shared pages split among
their users) is the honest total; both are printed. One parseable line per build:

    memory: source=long clips=32 sources=1 source_s=600 peak_rss_mb=... peak_pss_mb=... wall_s=...

    PYTHONPATH=$PWD python bench/memory.py [--long-minutes 10] [--long-clips 8 32 96]
                                          [--many 8 32 64] [--work /tmp/openuni-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"num_frames": 49, "fps": 16.0, "height": 256, "width": 256}


def write_numbered_video(path: Path, seconds: float, fps: int = 25, width: int = 640, height: int = 360) -> Path:
    """A long synthetic video written frame by frame (never held in memory): a moving bar and the
    frame index as binary blocks, so every frame differs."""
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            frame = base.copy()
            x = (i * 4) % (width - 32)
            frame[:, x:x + 32] = 255
            for bit in range(16):
                frame[8:24, 8 + bit * 20:24 + bit * 20] = 255 if (i >> bit) & 1 else 0
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    tmp.rename(path)
    return path


def sample_tree(root: int, stop: threading.Event, peaks: dict[str, float]) -> None:
    """Track the peak summed RSS and PSS of `root` and all its descendants."""
    while not stop.is_set():
        rss = pss = 0
        try:
            procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                info = p.memory_full_info()
                rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
            except psutil.Error:
                pass
        peaks["rss"], peaks["pss"] = max(peaks["rss"], rss), max(peaks["pss"], pss)
        stop.wait(0.5)


def run_build(work: Path, name: str, rows: list[dict], num_cpus: int,
              object_store_gb: float | None = None) -> dict[str, float]:
    manifest = work / f"{name}.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    config = work / "memory.yaml"
    config.write_text(f"name: memory\nclip: {json.dumps(SPEC)}\nannotators:\n  flow: {{backend: dis}}\n")
    out = work / f"out-{name}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = [sys.executable, "-m", "openuni_builder.commands.build", "--source", "manifest", "--input", str(manifest),
           "--shards", str(out), "--config", str(config), "--no-progress", "--num-cpus", str(num_cpus)]
    if object_store_gb:
        cmd += ["--object-store-gb", str(object_store_gb)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {"rss": 0.0, "pss": 0.0}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_tree, args=(proc.pid, stop, peaks))
    sampler.start()
    log, _ = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"build {name} failed:\n{log[-3000:]}")
    stats = json.loads((out / "stats.json").read_text())
    return {"written": stats["run"]["written"], "peak_rss_mb": peaks["rss"] / 2**20,
            "peak_pss_mb": peaks["pss"] / 2**20, "wall_s": time.time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the long source")
    parser.add_argument("--long-clips", type=int, nargs="*", default=[8, 32, 96],
                        help="clip counts cut from the long source (spread over its length)")
    parser.add_argument("--many", type=int, nargs="*", default=[8, 32, 64],
                        help="numbers of short (6 s) sources, one clip each")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/openuni-memory"))
    parser.add_argument("--object-store-gb", type=float,
                        help="pass --object-store-gb to the builds (default: Ray's 30%% of RAM)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    clip_s = SPEC["num_frames"] / SPEC["fps"]

    seconds = args.long_minutes * 60
    long_video = write_numbered_video(args.work / f"long-{seconds:g}s.mp4", seconds)
    for n in args.long_clips:
        step = (seconds - clip_s) / max(n, 1)
        rows = [{"path": str(long_video), "id": f"long{i}", "start": round(i * step, 3),
                 "end": round(i * step + clip_s + 0.1, 3)} for i in range(n)]
        r = run_build(args.work, f"long{n}", rows, args.num_cpus, args.object_store_gb)
        print(f"memory: source=long clips={r['written']} sources=1 source_s={seconds:g} "
              f"peak_rss_mb={r['peak_rss_mb']:.0f} peak_pss_mb={r['peak_pss_mb']:.0f} wall_s={r['wall_s']:.1f}",
              flush=True)
    for m in args.many:
        paths = [write_numbered_video(args.work / f"short{i}.mp4", 6.0) for i in range(m)]
        rows = [{"path": str(p)} for p in paths]
        r = run_build(args.work, f"many{m}", rows, args.num_cpus, args.object_store_gb)
        print(f"memory: source=many clips={r['written']} sources={m} source_s=6 "
              f"peak_rss_mb={r['peak_rss_mb']:.0f} peak_pss_mb={r['peak_pss_mb']:.0f} wall_s={r['wall_s']:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
