"""The driver's bookkeeping at scale: listing, resume, ledger appends and the near-duplicate index.

Each phase runs in a fresh Python process, so its peak RSS is its own:
- listing: a generated Koala-36M-style CSV of --rows rows through the koala36m source and the
  build's Listing (de-duplication by key, resume split), to the end and with --limit 1000;
- resume: Ledger.done_keys() over --rows done rows, then the listing split against them;
- ledger: N failures appended one record at a time, at N and 10 N;
- near_duplicate: N random 4-frame clip hashes added to and searched in HashIndex, at N and 10 N.
Growth is printed as a time ratio for 10x the records (target <= 12: linear, with slack).

    python bench/driver_scale.py --rows 1000000 --small 10000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import emit  # noqa: E402


def write_koala_csv(path: Path, rows: int) -> None:
    """Koala-36M's columns and value shapes (docs: shared/README.md), 20 clips per video."""
    rng = random.Random(0)
    with open(path, "w") as fh:
        fh.write("videoID,url,timestamp,caption,clarity_score,aesthetic_score,motion_score,"
                 "video_training_suitability_score\n")
        for i in range(rows):
            video, clip = f"y{i // 20:09d}x", i % 20  # an 11-character YouTube-style id
            start = clip * 6.5
            fh.write(f'{video}_{clip},https://www.youtube.com/watch?v={video},"[\'0:{int(start // 60):02d}:'
                     f'{start % 60:06.3f}\', \'0:{int((start + 6) // 60):02d}:{(start + 6) % 60:06.3f}\']",'
                     f'"A person walks through a sunlit hall while the camera pans slowly, clip {i}",'
                     f'{rng.random():.4f},{rng.random() * 6:.4f},{rng.random() * 10:.4f},{rng.random():.4f}\n')


def write_done(path: Path, rows: int) -> None:
    from openuni_builder.clip import ClipRequest

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for i in range(rows):
            req = ClipRequest(source="koala36m", video_id=f"y{i // 20:09d}x", path="x", start=(i % 20) * 6.5,
                              end=(i % 20) * 6.5 + 6, clip_index=i % 20)
            fh.write(json.dumps({"key": req.key, "shard": f"openuni-{i // 256:016x}.tar", "source": "koala36m",
                                 "bytes": 4_000_000, "member_bytes": {"mp4": 100_000}, "scores": {"a": 0.5},
                                 "filters": {}, "facts": {}}) + "\n")


def listing(csv: Path, done_dir: Path | None, limit: int | None) -> dict:
    from openuni_builder.build import Listing
    from openuni_builder.clip import ClipSpec
    from openuni_builder.ledger import Ledger
    from openuni_builder.sources import SourceContext, get_source

    started = time.perf_counter()
    done: dict = {}
    if done_dir is not None:
        done = Ledger(done_dir).done_keys()
    loaded = time.perf_counter() - started
    videos = Path(tempfile.mkdtemp())
    ctx = SourceContext(input=csv, work_dir=videos, spec=ClipSpec(), video_root=videos)
    plan = Listing(islice(get_source("koala36m").requests(ctx), limit), done, {}, {}, False)
    todo = sum(1 for _ in plan.todo())
    return {"listed": plan.listed, "todo": todo, "done_keys": len(done), "load_done_s": loaded,
            "wall_s": time.perf_counter() - started}


def ledger_appends(directory: Path, n: int) -> dict:
    from openuni_builder.ledger import Ledger

    ledger = Ledger(directory)
    started = time.perf_counter()
    for i in range(n):
        ledger.mark_failed(f"key-{i}", "decode", "video has too few frames", path=f"/videos/{i}.mp4")
    return {"wall_s": time.perf_counter() - started}


def near_duplicates(n: int) -> dict:
    from openuni_builder.filters import HashIndex

    rng = random.Random(0)
    hashes = [rng.randbytes(32) for _ in range(n)]
    started = time.perf_counter()
    index = HashIndex(6)
    found = 0
    for i, h in enumerate(hashes):
        found += index.nearest(h) is not None
        index.add(f"k{i}", h)
    return {"wall_s": time.perf_counter() - started, "found": found}


def run_phase(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def phase(args: list[str]) -> None:
    kind, *rest = args
    if kind == "listing":
        result = listing(Path(rest[0]), None if rest[1] == "-" else Path(rest[1]), int(rest[2]) or None)
    elif kind == "ledger":
        result = ledger_appends(Path(rest[0]), int(rest[1]))
    else:
        result = near_duplicates(int(rest[0]))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        phase(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="prints: bench listing ..., bench resume ..., bench ledger_growth ..., "
                                       "bench near_duplicate_growth ...")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the generated Koala CSV / done keys")
    p.add_argument("--small", type=int, default=10_000, help="N of the growth phases (they also run 10 N)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="openuni-scale-") as tmp:
        tmp = Path(tmp)
        csv = tmp / "koala.csv"
        write_koala_csv(csv, args.rows)
        full = run_phase("listing", str(csv), "-", "0")
        limited = run_phase("listing", str(csv), "-", "1000")
        emit("listing", rows=args.rows, csv_mb=round(csv.stat().st_size / 1e6), wall_s=full["wall_s"],
             peak_rss_mb=round(full["peak_rss_mb"]), target_rss_mb=500, met=full["peak_rss_mb"] <= 500,
             limit_1000_s=limited["wall_s"], limit_1000_rss_mb=round(limited["peak_rss_mb"]))
        write_done(tmp / "build" / "ledger" / "done.jsonl", args.rows)
        resume = run_phase("listing", str(csv), str(tmp / "build"), "0")
        emit("resume", done_keys=resume["done_keys"], load_done_s=resume["load_done_s"], wall_s=resume["wall_s"],
             todo=resume["todo"], peak_rss_mb=round(resume["peak_rss_mb"]))
        small, large = (run_phase("ledger", str(tmp / f"ledger{n}"), str(n)) for n in (args.small, 10 * args.small))
        ratio = large["wall_s"] / small["wall_s"]
        emit("ledger_growth", n=args.small, small_s=small["wall_s"], large_s=large["wall_s"], ratio=ratio,
             target=12, met=ratio <= 12)
        small, large = (run_phase("dup", str(n)) for n in (args.small, 10 * args.small))
        ratio = large["wall_s"] / small["wall_s"]
        emit("near_duplicate_growth", n=args.small, small_s=small["wall_s"], large_s=large["wall_s"], ratio=ratio,
             target=12, met=ratio <= 12, peak_rss_mb_at_10n=round(large["peak_rss_mb"]))


if __name__ == "__main__":
    main()
