"""Shard writing on the workers against the old driver writer, on the same finished clips.

Both sides start from the same Ray dataset of encoded clips (rows {"key", "clip"}: a pickled
`Clip` whose members are real-sized random bytes, so the write path, not encoding, is measured):
- driver: the old data plane. Every clip's bytes come to the driver (`iter_rows`), which
  unpickles them and tars them into shards on its own disk;
- workers: the new one. `shards.write_shards` runs as Ray tasks that commit shards straight to the
  build's location, and the driver iterates only the per-clip JSON records.
Printed: MB/s of sample bytes for each, their ratio, what the driver received per clip, and the
driver's CPU seconds per GB written (what bounds one driver on a cluster of any size).

    python bench/data_plane.py --clips 64 --sample-mb 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import emit  # noqa: E402


def finished_clips(count: int, sample_mb: float) -> list[dict]:
    """Rows of encoded clips with a realistic member layout (RGB + flow video + flow sidecar)."""
    from openuni_builder.clip import Clip, ClipRequest, ClipSpec

    rows, size = [], int(sample_mb * 2**20)
    for i in range(count):
        clip = Clip(request=ClipRequest(source="bench", video_id=f"v{i}", path=f"/videos/v{i}.mp4"), spec=ClipSpec())
        meta = {"key": clip.key, "source": "bench", "video_id": f"v{i}", "modalities": {"flow": {}}}
        clip.members = {"mp4": os.urandom(size // 20), "flow.mp4": os.urandom(size // 5),
                        "flow.npz": os.urandom(size - size // 20 - size // 5), "json": json.dumps(meta).encode(),
                        "txt": b"a caption"}
        rows.append({"key": clip.key, "clip": clip.to_bytes()})
    return rows


def driver_writer(ds, out: Path, max_samples: int) -> tuple[int, int]:
    """The old loop: every row's bytes to the driver, tarred there. Returns (sample bytes, received)."""
    from openuni_builder.clip import Clip
    from openuni_builder.shards import index_row, write_sample

    (out / "shards").mkdir(parents=True)
    tar, count, shard, sample_bytes, received = None, 0, 0, 0, 0
    for row in ds.iter_rows():
        received += len(row["clip"])
        clip = Clip.from_bytes(row["clip"])
        if tar is None or count == max_samples:
            if tar is not None:
                tar.close()
            tar, count, shard = tarfile.open(out / "shards" / f"openuni-{shard:06d}.tar", "w"), 0, shard + 1
        write_sample(tar, clip.key, clip.members, 0)
        index_row(clip.key, str(shard), clip.members, json.loads(clip.members["json"]))
        sample_bytes += sum(len(b) for b in clip.members.values())
        count += 1
    if tar is not None:
        tar.close()
    return sample_bytes, received


def worker_writers(ds, out: Path, max_samples: int) -> tuple[int, int]:
    """The new stage: tasks write the shards; the driver gets records. Returns (sample bytes, received)."""
    from openuni_builder.shards import write_shards

    written = ds.map_batches(write_shards, batch_size=max_samples, batch_format="numpy",
                             fn_kwargs={"out": str(out), "options": None, "max_samples": max_samples,
                                        "max_bytes": 10**12, "mtime": 0.0}, num_cpus=1)
    sample_bytes, received = 0, 0
    for row in written.iter_rows():
        received += len(row["record"])
        sample_bytes += json.loads(row["record"])["row"]["bytes"]
    return sample_bytes, received


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="prints: bench data_plane worker_over_driver=... driver_mb_s=... worker_mb_s=...")
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--sample-mb", type=float, default=4.0, help="bytes per sample (default 4 MB, the RGB + flow default)")
    p.add_argument("--max-samples", type=int, default=16, help="samples per shard")
    p.add_argument("--num-cpus", type=int, default=os.cpu_count())
    args = p.parse_args()

    import ray

    from openuni_builder.runtime import init_ray

    init_ray(None, args.num_cpus)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = finished_clips(args.clips, args.sample_mb)
    results = {}
    with tempfile.TemporaryDirectory(prefix="openuni-bench-") as tmp:
        for name, writer in (("driver", driver_writer), ("workers", worker_writers)):
            ds = ray.data.from_items(rows, override_num_blocks=len(rows)).materialize()  # both start in the store
            started, cpu = time.perf_counter(), time.process_time()
            sample_bytes, received = writer(ds, Path(tmp) / name, args.max_samples)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            # The driver's CPU seconds per GB written bound what one driver can feed, whatever the cluster.
            results[name] = (sample_bytes / wall / 1e6, received / args.clips, cpu / (sample_bytes / 1e9))
            emit(f"data_plane_{name}", mb_s=results[name][0], driver_bytes_per_clip=round(results[name][1]),
                 driver_cpu_s_per_gb=results[name][2], clips=args.clips, sample_mb=args.sample_mb, wall_s=wall)
    ray.shutdown()
    before, after = results["driver"], results["workers"]
    emit("data_plane", worker_over_driver=after[0] / before[0], driver_mb_s=before[0], worker_mb_s=after[0],
         driver_bytes_per_clip_before=round(before[1]), driver_bytes_per_clip_after=round(after[1]),
         driver_cpu_before_over_after=before[2] / after[2], cpus=args.num_cpus)


if __name__ == "__main__":
    main()
