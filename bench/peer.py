"""Peer bench: `openuni-build` against video2dataset 1.3.0 on the same clips, same run.

Both tools get the bundled sample clips (3 real videos + synthetic clips with exact flow) and the
same time window per clip (the window `video_io.cut_clip` centres in the segment), and produce
clips at the default spec (256x256, 16 fps, 49 frames) with forward optical flow in WebDataset:
  ours: `openuni-build --source manifest` with the default pipeline (RGB mp4, DIS flow, flow
        Pixelplanes video, int16 fixed-point flow sidecar, JSON), on --num-cpus CPUs.
  v2d:  video2dataset's cut stage (exact clipping, resize + centre crop, fps, each via ffmpeg)
        then its optical_flow stage (decord decode, OpenCV Farneback "cv2" detector, float16
        .npy), with --num-cpus worker processes; see bench/v2d_driver.py.
video2dataset pins torch 2.1 and numpy < 2, so it is installed into its own virtual environment
(--venv, created on first use, reused after: several GB, mostly torch's CUDA wheels), with
imageio-ffmpeg's static ffmpeg binary on its PATH (a fresh machine has no ffmpeg).

Throughput is clips per wall second of each whole run (process start to exit, both tools'
fixed costs included); --copies N lists every clip N times so those fixed costs weigh less, and
--marginal N adds a run at N copies and prints the throughput between the two sizes (extra clips
over extra wall seconds), in which each tool's fixed cost cancels: the rate of a long build.
Flow accuracy is end-point error against the synthetic clips' exact flow at the clip size (both
tools output 256x256), over all pixels and over pixels still visible at t+1.

Prints `bench peer_* key=value ...`; the ratio lines are `bench peer_ratio` and `bench peer_flow_ratio`.

    PYTHONPATH=$PWD python bench/peer.py [--num-cpus 2] [--synthetic 4] [--copies 1] [--marginal 4] [--repeat 1]
                                         [--venv ~/.cache/openuni/v2d-venv]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (ROOT, SampleClip, default_spec, emit, emit_machine, pipeline_yaml,  # noqa: E402
                           repeated, run_build, run_measured, sample_clips, write_manifest)
from openuni_builder.clip import ClipSpec  # noqa: E402
from openuni_builder.metrics import epe  # noqa: E402
from openuni_builder.pixelplanes.storage import load_raw, raw_member  # noqa: E402
from openuni_builder.synthetic import load_gt  # noqa: E402
from openuni_builder.video_io import cut_clip  # noqa: E402

V2D_REQUIREMENTS = ["video2dataset==1.3.0", "pyarrow<18", "imageio-ffmpeg==0.8.1"]
# pyarrow: video2dataset pins numpy < 2, and pyarrow 18+ needs numpy 2 without saying so.
DEFAULT_VENV = Path.home() / ".cache" / "openuni" / "v2d-venv"
THROUGHPUT_TARGET = 2.0


def ensure_v2d(venv: Path) -> Path:
    """video2dataset's virtual environment (created and installed on first use) with an `ffmpeg`
    in its bin/; returns its python."""
    python, ready = venv / "bin" / "python", venv / ".openuni-ready"
    if not ready.exists():
        print(f"installing {' '.join(V2D_REQUIREMENTS)} into {venv} (first run only; several GB)", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *V2D_REQUIREMENTS], check=True)
        ready.write_text(" ".join(V2D_REQUIREMENTS) + "\n")
    ffmpeg = venv / "bin" / "ffmpeg"
    if not ffmpeg.exists():
        exe = subprocess.run([str(python), "-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"],
                             check=True, capture_output=True, text=True).stdout.strip()
        ffmpeg.symlink_to(exe)
    return python


def windows(clips: list[SampleClip], spec: ClipSpec) -> list[dict]:
    """The time window our build cuts from each clip, for video2dataset's clipping."""
    out = []
    for c in clips:
        _, info = cut_clip(c.path, spec, c.start, c.end)
        out.append({"id": c.id, "path": c.path, "start": info["window_start"],
                    "end": info["window_start"] + spec.duration})
    return out


def ours_flows(build: Path) -> dict[str, np.ndarray]:
    """Flow sidecars of our build by clip id (manifest id = video_id)."""
    index = pd.read_parquet(build / "index.parquet")
    flows = {}
    for shard, rows in index.groupby("shard"):
        with tarfile.open(build / "shards" / shard) as tar:
            for row in rows.itertuples():
                member = tar.extractfile(f"{row.key}.{raw_member('flow')}")
                flows[row.video_id] = load_raw(member.read())["flow"].astype(np.float32)
    return flows


def v2d_flows(flow_dir: Path) -> dict[str, np.ndarray]:
    """video2dataset's flow arrays by clip id (kept in each sample's JSON)."""
    flows = {}
    for shard in sorted(flow_dir.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in members:
                if not name.endswith(".json"):
                    continue
                meta = json.loads(tar.extractfile(members[name]).read())
                npy = members.get(name[:-5] + ".npy")
                if meta.get("status") == "success" and npy is not None:
                    flows[meta["id"]] = np.load(io.BytesIO(tar.extractfile(npy).read())).astype(np.float32)
    return flows


def flow_errors(flows: dict[str, np.ndarray], clips: list[SampleClip]) -> dict[str, float]:
    """Mean EPE over the synthetic clips (all pixels / still-visible pixels) and how many pairs
    lined up; a tool that returns a different number of frame pairs is scored on the common ones."""
    all_px, visible, pairs, missing = [], [], 0, 0
    for c in clips:
        if c.gt is None:
            continue
        if c.id not in flows:
            missing += 1
            continue
        gt = load_gt(c.gt)
        pred = flows[c.id]
        n = min(len(pred), len(gt["flow"]))
        if pred.shape[1:] != gt["flow"].shape[1:]:
            raise ValueError(f"{c.id}: flow is {pred.shape[1:]}, ground truth {gt['flow'].shape[1:]}")
        all_px.append(epe(pred[:n], gt["flow"][:n]))
        visible.append(epe(pred[:n], gt["flow"][:n], gt["flow_valid"][:n]))
        pairs += n
    if not all_px:
        raise RuntimeError("no synthetic clip's flow came back to score")
    return {"epe": float(np.mean(all_px)), "epe_visible": float(np.mean(visible)), "pairs": pairs, "missing": missing}


def run_both(clips: list[SampleClip], spec: ClipSpec, work: Path, python: Path, args: argparse.Namespace) -> dict:
    """Both tools on `clips` under `work`: per tool its measured run and its flows by clip id
    (and video2dataset's per-stage wall times)."""
    manifest = write_manifest(clips, work / "clips" / "manifest.csv")
    spans = work / "clips" / "v2d_clips.json"
    spans.write_text(json.dumps(windows(clips, spec)))
    ours = run_build(manifest, work / "ours", pipeline_yaml(work / "clips", spec), args.num_cpus)
    env = {**os.environ, "PATH": f"{args.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    v2d = run_measured([str(python), str(ROOT / "bench" / "v2d_driver.py"), "--clips", str(spans),
                        "--out", str(work / "v2d"), "--size", str(spec.height), "--fps", f"{spec.fps:g}",
                        "--num-cpus", str(args.num_cpus)], work / "v2d.log", env, args.num_cpus)
    if v2d.returncode:
        raise RuntimeError(f"video2dataset run failed (exit {v2d.returncode}); see {v2d.log}")
    stages = {}
    for line in v2d.log.read_text().splitlines():
        if line.startswith("v2d_stage "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            stages[fields["name"]] = float(fields["wall_s"])
    return {"ours": (ours, ours_flows(work / "ours")), "v2d": (v2d, v2d_flows(work / "v2d" / "flow")),
            "v2d_stages": stages}


def median_runs(clips: list[SampleClip], spec: ClipSpec, work: Path, python: Path, args: argparse.Namespace) -> dict:
    """`run_both` --repeat times; per tool the run with the median wall time, and every wall time
    ("ours_walls", "v2d_walls") so the spread is printed beside the figure."""
    rounds = [run_both(clips, spec, work / f"round{k}", python, args) for k in range(args.repeat)]
    out: dict = {}
    for tool in ("ours", "v2d"):
        order = sorted(range(len(rounds)), key=lambda k: rounds[k][tool][0].wall_s)
        middle = order[len(order) // 2]
        out[tool], out[f"{tool}_walls"] = rounds[middle][tool], [r[tool][0].wall_s for r in rounds]
        if tool == "v2d":
            out["v2d_stages"] = rounds[middle]["v2d_stages"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs for each tool (default 2)")
    parser.add_argument("--synthetic", type=int, default=4, help="synthetic clips beside the 3 real videos (default 4)")
    parser.add_argument("--copies", type=int, default=1,
                        help="list every clip this many times (distinct keys), so fixed costs weigh less (default 1)")
    parser.add_argument("--marginal", type=int, default=0, metavar="N",
                        help="also run both tools with every clip listed N times and print the marginal "
                             "throughput between the two sizes, where each tool's fixed cost cancels (default: off)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run both tools this many times per list size, interleaved; the median wall "
                             "time of each counts and every run is printed (default 1)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"video2dataset's virtual environment, created if missing (default {DEFAULT_VENV})")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if args.marginal and args.marginal <= args.copies:
        parser.error("--marginal N needs N > --copies")

    python = ensure_v2d(args.venv)
    work = args.work or Path(tempfile.mkdtemp(prefix="openuni-peer-"))
    try:
        emit_machine()
        spec = default_spec()
        base = sample_clips(work / "clips", spec, args.synthetic)
        clips = repeated(base, args.copies, spec) if args.copies > 1 else base
        runs = median_runs(clips, spec, work, python, args)
        (ours, ours_out), (v2d, v2d_out) = runs["ours"], runs["v2d"]
        n = len(clips)
        emit("peer_ours", wall_s=ours.wall_s, cpu_s=ours.cpu_s, peak_pss_mb=ours.peak_pss_mb, clips=n,
             clips_out=len(ours_out), clips_per_s=len(ours_out) / ours.wall_s, num_cpus=args.num_cpus,
             runs="/".join(f"{w:.2f}" for w in runs["ours_walls"]))
        emit("peer_v2d", wall_s=v2d.wall_s, cpu_s=v2d.cpu_s, peak_pss_mb=v2d.peak_pss_mb, clips=n,
             clips_out=len(v2d_out), clips_per_s=len(v2d_out) / v2d.wall_s,
             cut_s=runs["v2d_stages"].get("cut", float("nan")),
             flow_s=runs["v2d_stages"].get("optical_flow", float("nan")), num_cpus=args.num_cpus,
             runs="/".join(f"{w:.2f}" for w in runs["v2d_walls"]))
        ratio = (len(ours_out) / ours.wall_s) / max(len(v2d_out) / v2d.wall_s, 1e-9)
        emit("peer_ratio", throughput_ours_over_v2d=ratio, cpu_v2d_over_ours=v2d.cpu_s / ours.cpu_s,
             target=THROUGHPUT_TARGET, met=ratio >= THROUGHPUT_TARGET)
        errors = {"ours": flow_errors(ours_out, clips), "v2d": flow_errors(v2d_out, clips)}
        for tool, e in errors.items():
            emit("peer_flow", tool=tool, method="opencv-dis-medium" if tool == "ours" else "opencv-farneback",
                 **e, size=f"{spec.height}x{spec.width}")
        emit("peer_flow_ratio", epe_ours_over_v2d=errors["ours"]["epe"] / errors["v2d"]["epe"],
             epe_visible_ours_over_v2d=errors["ours"]["epe_visible"] / errors["v2d"]["epe_visible"],
             met=errors["ours"]["epe"] <= errors["v2d"]["epe"])
        if args.marginal:
            big = median_runs(repeated(base, args.marginal, spec), spec, work / f"x{args.marginal}", python, args)
            rates = {}
            for tool in ("ours", "v2d"):
                (small_run, small_out), (big_run, big_out) = runs[tool], big[tool]
                extra_clips, extra_s = len(big_out) - len(small_out), big_run.wall_s - small_run.wall_s
                rates[tool] = extra_clips / extra_s if extra_s > 0 else float("nan")
                emit("peer_marginal_tool", tool=tool, clips=f"{len(small_out)}->{len(big_out)}",
                     wall_s=f"{small_run.wall_s:.2f}->{big_run.wall_s:.2f}",
                     runs_big="/".join(f"{w:.2f}" for w in big[f"{tool}_walls"]),
                     cpu_s=f"{small_run.cpu_s:.1f}->{big_run.cpu_s:.1f}", marginal_clips_per_s=rates[tool])
            marginal = rates["ours"] / rates["v2d"]
            emit("peer_marginal", throughput_ours_over_v2d=marginal, target=THROUGHPUT_TARGET,
                 met=marginal >= THROUGHPUT_TARGET)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
